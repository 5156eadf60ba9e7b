//! From a request to a decision: the normalised host and tenant, the
//! normalised path, and the route that serves it.

pub mod path;
pub mod table;
pub mod tenant;
