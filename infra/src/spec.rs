//! The platform spec: `platform.toml` (the platform team's: platform, teams, environments) and
//! `services/<name>.toml` (each owned by its service's team, so CODEOWNERS can hand each team its
//! own part of the spec).
//!
//! Data path: [`load`] reads the files (embedded or from a directory) → serde parses them into
//! [`types`] → [`validate`] collects every semantic problem as a [`Problem`] with file, line and
//! field → a [`Spec`]. [`exemptions`] derives what the policy engine must skip. Types depend on
//! nothing here; validation depends on types, problems and syntax; only the loader calls it.

pub mod exemptions;
mod load;
pub mod problems;
pub mod syntax;
pub mod types;
mod validate;

pub use exemptions::rules;
pub use problems::{Problem, Problems};
pub use types::*;
