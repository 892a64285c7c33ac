//! Which peers may tell us the client's address (`X-Forwarded-For`): the
//! kit's [`emporium_http::client::TrustedProxies`].

pub use emporium_http::client::TrustedProxies;
