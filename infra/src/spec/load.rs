//! Loading the spec: the copy embedded at build time, or a directory on disk; both go through
//! [`Spec::parse`], which parses every file and then runs [`super::validate`] over all of them.

use std::path::Path;

use super::problems::{Problem, Problems};
use super::types::{PlatformFile, Service, SourceFile, Spec};
use crate::Error;

/// The spec as shipped in this repository, embedded at build time (see `build.rs`).
const EMBEDDED_PLATFORM: &str = include_str!("../../platform.toml");
include!(concat!(env!("OUT_DIR"), "/embedded_services.rs"));

impl Spec {
    /// The default platform: `infra/platform.toml` and `infra/services/*.toml` as built in.
    pub fn embedded() -> Result<Spec, Error> {
        let platform = SourceFile {
            path: "infra/platform.toml".to_owned(),
            text: EMBEDDED_PLATFORM.to_owned(),
        };
        let services: Vec<SourceFile> = EMBEDDED_SERVICES
            .iter()
            .map(|(file, text)| SourceFile {
                path: format!("infra/services/{file}"),
                text: (*text).to_owned(),
            })
            .collect();
        Spec::parse(&platform, &services)
    }

    /// Loads `DIR/platform.toml` and every `DIR/services/*.toml`.
    pub fn load(dir: &Path) -> Result<Spec, Error> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| Error::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let platform_path = dir.join("platform.toml");
        let platform = SourceFile {
            path: platform_path.display().to_string(),
            text: read(&platform_path)?,
        };
        let services_dir = dir.join("services");
        let entries = std::fs::read_dir(&services_dir).map_err(|source| Error::Read {
            path: services_dir.clone(),
            source,
        })?;
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| Error::Read {
                path: services_dir.clone(),
                source,
            })?;
            let path = entry.path();
            if path.extension().is_some_and(|ext| ext == "toml") {
                paths.push(path);
            }
        }
        paths.sort();
        let mut services = Vec::with_capacity(paths.len());
        for path in paths {
            services.push(SourceFile {
                path: path.display().to_string(),
                text: read(&path)?,
            });
        }
        Spec::parse(&platform, &services)
    }

    /// Parses and validates: every syntax and semantic problem of every file is reported at once.
    pub fn parse(platform: &SourceFile, services: &[SourceFile]) -> Result<Spec, Error> {
        let mut problems = Vec::new();
        let platform_file = match toml::from_str::<PlatformFile>(&platform.text) {
            Ok(parsed) => Some(parsed),
            Err(err) => {
                problems.push(Problem::from_toml(platform, &err));
                None
            }
        };
        let mut parsed_services = Vec::with_capacity(services.len());
        for source in services {
            match toml::from_str::<Service>(&source.text) {
                Ok(mut service) => {
                    service.name = file_stem(&source.path).to_owned();
                    parsed_services.push((source, service));
                }
                Err(err) => problems.push(Problem::from_toml(source, &err)),
            }
        }
        let Some(platform_file) = platform_file else {
            return Err(Error::Invalid(Problems(problems)));
        };
        let all_names = services
            .iter()
            .map(|s| file_stem(&s.path).to_owned())
            .collect();
        problems.extend(super::validate::validate(
            platform,
            &platform_file,
            &parsed_services,
            &all_names,
        ));
        if !problems.is_empty() {
            return Err(Error::Invalid(Problems(problems)));
        }
        let mut services: Vec<Service> = parsed_services.into_iter().map(|(_, s)| s).collect();
        services.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Spec {
            platform: platform_file.platform,
            teams: platform_file.teams,
            environments: platform_file.environments,
            services,
        })
    }
}

fn file_stem(path: &str) -> &str {
    let base = path.rsplit(['/', '\\']).next().unwrap_or(path);
    base.strip_suffix(".toml").unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_spec_loads_both_services_and_two_environments() {
        let spec = Spec::embedded().expect("the shipped spec is valid");
        let names: Vec<_> = spec.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["antaeus", "payment-provider"]);
        let envs: Vec<_> = spec.environments.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(envs, ["production", "staging"]);
    }

    #[test]
    fn loading_from_the_directory_matches_the_embedded_spec() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let loaded = Spec::load(dir).expect("the shipped spec is valid");
        let embedded = Spec::embedded().expect("the shipped spec is valid");
        assert_eq!(format!("{loaded:?}"), format!("{embedded:?}"));
    }

    #[test]
    fn loading_a_missing_directory_names_the_path() {
        let err = Spec::load(Path::new("/nonexistent/spec")).expect_err("no such directory");
        assert!(
            err.to_string().contains("/nonexistent/spec/platform.toml"),
            "{err}"
        );
    }
}
