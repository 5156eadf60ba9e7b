//! WebSocket tunnels: forward the upgrade handshake, then splice bytes.
//! (Stub: lands with the WebSocket issue.)
