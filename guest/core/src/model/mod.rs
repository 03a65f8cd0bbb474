//! The files XNAT writes, read losslessly and written back in XNAT's style: resource catalogs, image session
//! documents, file digests and the audit stamps of a change. Not for: where these files live (that is
//! [`crate::site`]) or when they change (the services).

pub mod audit;
pub mod catalog;
pub mod catalog_stream;
pub mod digest;
pub mod session;
