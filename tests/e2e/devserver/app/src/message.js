export const message = "message v1";
