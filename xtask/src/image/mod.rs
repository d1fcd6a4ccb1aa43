//! OCI images built in Rust without Docker or a daemon (`cargo xtask image` builds on this).
//!
//! - [`oci`]: the generic assembler (entries + config + timestamp → layout, tar, digest), for any
//!   static binary (the provider's image, the e2e's `pause` image).

// The assembler is used by `cargo xtask image` and by the e2e's images as they land.
#[allow(dead_code)]
pub mod oci;
