//! The billing platform as typed data: a declarative spec rendered into typed Kubernetes and Flux
//! objects (the `flux/` GitOps tree), plus the cross-object checks `cargo xtask verify` runs.
//!
//! Data path: [`spec`] ([`Spec::embedded`] or [`Spec::load`]: parse, validate) → [`render()`]
//! (typed objects, one builder per file) → [`Tree`] → [`checks::run`] over [`Tree::entries`];
//! [`Tree::render`] gives the bytes `cargo xtask gen` writes. [`meta`] holds the label
//! conventions, [`flux`] the Flux types, [`synthetic`] a generated platform for benchmarks, and
//! `testing` (feature `testing`) the fixtures tests share.

pub mod artifact;
pub mod checks;
pub mod flux;
pub mod meta;
pub mod render;
pub mod spec;
pub mod synthetic;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tree;

pub use render::{render, render_into};
pub use spec::{Problem, Problems, Spec};
pub use tree::{Object, Tree};

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A spec file or directory could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The spec has problems; every one is listed with file, line and field.
    #[error("{0}")]
    Invalid(Problems),
    /// An object could not be serialised (a bug in a type, never in the spec).
    #[error("cannot serialise {what}")]
    Serialize {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A spec built by hand (not through [`Spec::parse`]) refers to something it does not declare.
    #[error("the spec refers to something it does not declare: {0}")]
    Reference(String),
    /// The policy bundle could not be compiled or turned into admission policies.
    #[error("cannot render the policy bundle")]
    Policy(#[source] policies::Error),
    /// Two generators wrote the same path, or a file was added where the tree derives one.
    #[error("cannot build the tree: {0}")]
    Tree(String),
    /// A directory's OCI artifact could not be assembled (a file name tar cannot hold).
    #[error("cannot build the OCI artifact of {dir}")]
    Artifact {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    /// A streaming tree's sink could not take a file.
    #[error("cannot write {path}")]
    Sink {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
