//! Configuration from environment variables: one table drives parsing, defaults and `--help`.

use std::net::SocketAddr;
use std::time::Duration;

/// Everything the process needs to run, fully validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the HTTP listener binds.
    pub listen: SocketAddr,
    /// Probability that a charge succeeds, in `[0, 1]`.
    pub success_rate: f64,
    /// Fixed RNG seed for reproducible runs; `None` seeds from the OS.
    pub seed: Option<u64>,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_timeout: Duration,
    /// How long to keep accepting (with `/readyz` at 503) after SIGTERM, so load balancers notice.
    pub drain_delay: Duration,
    /// How long a client may take to send the request line and headers.
    pub header_timeout: Duration,
    /// How long a client may take to send the request body.
    pub body_timeout: Duration,
    /// Most `Idempotency-Key`s remembered at once; the oldest is forgotten first.
    pub idempotency_keys: usize,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_ttl: Duration,
    /// Which log lines to write: a default level and per-target levels, e.g. `info` or `warn,provider=debug`.
    pub log: tracing_subscriber::filter::Targets,
    /// Serving threads; `None`: as many as the CPUs the process may use (its cgroup quota).
    pub workers: Option<usize>,
}

/// One environment variable: its name, its default (`None`: unset by default) and what it does.
pub struct Var {
    pub name: &'static str,
    pub default: Option<&'static str>,
    pub help: &'static str,
}

/// Every variable the provider reads, in `--help` order.
pub const VARS: &[Var] = &[
    Var {
        name: "PROVIDER_LISTEN",
        default: Some("0.0.0.0:9000"),
        help: "address and port to listen on",
    },
    Var {
        name: "PROVIDER_SUCCESS_RATE",
        default: Some("0.5"),
        help: "probability that a charge succeeds, 0 to 1",
    },
    Var {
        name: "PROVIDER_SEED",
        default: None,
        help: "u64 seed for reproducible outcomes; unset seeds from the OS",
    },
    Var {
        name: "PROVIDER_SHUTDOWN_TIMEOUT",
        default: Some("10s"),
        help: "time in-flight requests get to finish after SIGTERM/SIGINT",
    },
    Var {
        name: "PROVIDER_DRAIN_DELAY",
        default: Some("0s"),
        help: "time to keep accepting after SIGTERM while /readyz answers 503",
    },
    Var {
        name: "PROVIDER_HEADER_TIMEOUT",
        default: Some("5s"),
        help: "time a client gets to send the request headers",
    },
    Var {
        name: "PROVIDER_BODY_TIMEOUT",
        default: Some("10s"),
        help: "time a client gets to send the request body",
    },
    Var {
        name: "PROVIDER_IDEMPOTENCY_KEYS",
        default: Some("10000"),
        help: "most Idempotency-Keys remembered (oldest forgotten first)",
    },
    Var {
        name: "PROVIDER_IDEMPOTENCY_TTL",
        default: Some("24h"),
        help: "how long an Idempotency-Key is remembered",
    },
    Var {
        name: "PROVIDER_LOG",
        default: Some("info"),
        help: "log level, or target=level pairs (error, warn, info, debug, warn,provider=debug)",
    },
    Var {
        name: "PROVIDER_WORKERS",
        default: None,
        help: "serving threads, 1 to 1024; unset: the CPUs the process may use (cgroup quota)",
    },
];

/// A variable whose value cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{name}={value:?} is invalid: {reason} (fix or unset {name}; see payment-provider --help)")]
pub struct ConfigError {
    /// The offending variable.
    pub name: &'static str,
    /// What it was set to.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration from `(variable, value)` pairs, as if they were the whole
    /// environment: for tests and for embedding the server.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| {
            pairs
                .iter()
                .rfind(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &'static str| -> Option<(&'static str, String)> {
            let var = VARS
                .iter()
                .find(|v| v.name == name)
                .expect("every variable read is listed in VARS");
            lookup(name)
                .filter(|v| !v.is_empty())
                .or_else(|| var.default.map(str::to_owned))
                .map(|value| (name, value))
        };
        let required =
            |name: &'static str| get(name).expect("variables read with `required` have defaults");

        Ok(Config {
            listen: parse(required("PROVIDER_LISTEN"), |v| {
                v.parse()
                    .map_err(|_| "expected an IP address and port, like 0.0.0.0:9000".to_owned())
            })?,
            success_rate: parse(required("PROVIDER_SUCCESS_RATE"), |v| {
                match v.parse::<f64>() {
                    Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
                    _ => Err("expected a probability between 0 and 1, like 0.5".to_owned()),
                }
            })?,
            seed: get("PROVIDER_SEED")
                .map(|var| {
                    parse(var, |v| {
                        v.parse()
                            .map_err(|_| "expected an unsigned 64-bit integer".to_owned())
                    })
                })
                .transpose()?,
            shutdown_timeout: parse(required("PROVIDER_SHUTDOWN_TIMEOUT"), parse_duration)?,
            drain_delay: parse(required("PROVIDER_DRAIN_DELAY"), parse_duration)?,
            header_timeout: parse(required("PROVIDER_HEADER_TIMEOUT"), nonzero(parse_duration))?,
            body_timeout: parse(required("PROVIDER_BODY_TIMEOUT"), nonzero(parse_duration))?,
            idempotency_keys: parse(required("PROVIDER_IDEMPOTENCY_KEYS"), |v| {
                v.parse()
                    .map_err(|_| "expected a non-negative integer".to_owned())
            })?,
            idempotency_ttl: parse(required("PROVIDER_IDEMPOTENCY_TTL"), parse_duration)?,
            // `Targets` rather than `EnvFilter`: static levels only, and much cheaper per event
            // at one access line per request.
            log: parse(required("PROVIDER_LOG"), |v| {
                v.parse().map_err(|e| format!("{e}: expected a level like info, or target=level pairs like warn,provider=debug"))
            })?,
            workers: get("PROVIDER_WORKERS")
                .map(|var| {
                    parse(var, |v| match v.parse::<usize>() {
                        Ok(n) if (1..=1024).contains(&n) => Ok(n),
                        _ => Err("expected a number of threads from 1 to 1024".to_owned()),
                    })
                })
                .transpose()?,
        })
    }

    /// The `--help` text: what the binary does and every variable with its default.
    pub fn help() -> String {
        let mut out = String::from(
            "payment-provider: charges Antaeus invoices over HTTP, succeeding at random\n\n\
             usage: payment-provider [--help | --version]    serve, configured by the variables below\n\
             \x20      payment-provider charge [URL] [options]  send a charge as stock Antaeus does, a smoke test\n\
             \x20                                               (see payment-provider charge --help)\n\n\
             POST / or /v1/charges {\"currency\":…,\"value\":<number>,\"customer_id\":<integer>} -> {\"result\":true|false}\n\
             GET /healthz, /readyz, /metrics\n\n\
             configuration (environment variables):\n",
        );
        for var in VARS {
            let default = var
                .default
                .map_or_else(|| "no default".to_owned(), |d| format!("default {d}"));
            out.push_str(&format!("  {:<27} {} ({default})\n", var.name, var.help));
        }
        out.push_str("\ndurations are written like 500ms, 10s, 2m or 24h\n");
        out
    }
}

fn parse<T>(
    (name, value): (&'static str, String),
    f: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    f(value.trim()).map_err(|reason| ConfigError {
        name,
        value,
        reason,
    })
}

fn nonzero(
    f: fn(&str) -> Result<Duration, String>,
) -> impl FnOnce(&str) -> Result<Duration, String> {
    move |v| match f(v)? {
        d if d.is_zero() => Err("must be longer than zero".to_owned()),
        d => Ok(d),
    }
}

/// Parses `500ms`, `10s`, `2m`, `24h`; a bare number means seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| "expected a duration like 500ms, 10s, 2m or 24h".to_owned())?;
    let per_unit_ms = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("unknown duration unit {unit:?}: use ms, s, m or h")),
    };
    n.checked_mul(per_unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| "duration is too long".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_pairs(pairs)
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = config(&[]).expect("defaults are valid");
        assert_eq!(config.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(config.success_rate, 0.5);
        assert_eq!(config.seed, None);
        assert_eq!(config.workers, None);
        assert_eq!(config.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(config.drain_delay, Duration::ZERO);
        assert_eq!(config.idempotency_keys, 10_000);
        assert_eq!(config.idempotency_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(config.log.to_string(), "info");
    }

    #[test]
    fn every_variable_is_read_from_the_environment() {
        let config = config(&[
            ("PROVIDER_LISTEN", "127.0.0.1:0"),
            ("PROVIDER_SUCCESS_RATE", "1"),
            ("PROVIDER_SEED", "42"),
            ("PROVIDER_SHUTDOWN_TIMEOUT", "500ms"),
            ("PROVIDER_DRAIN_DELAY", "2s"),
            ("PROVIDER_HEADER_TIMEOUT", "3"),
            ("PROVIDER_BODY_TIMEOUT", "1m"),
            ("PROVIDER_IDEMPOTENCY_KEYS", "7"),
            ("PROVIDER_IDEMPOTENCY_TTL", "1h"),
            ("PROVIDER_LOG", "warn,provider=debug"),
            ("PROVIDER_WORKERS", "3"),
        ])
        .expect("all values are valid");
        assert_eq!(config.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.success_rate, 1.0);
        assert_eq!(config.seed, Some(42));
        assert_eq!(config.shutdown_timeout, Duration::from_millis(500));
        assert_eq!(config.drain_delay, Duration::from_secs(2));
        assert_eq!(config.header_timeout, Duration::from_secs(3));
        assert_eq!(config.body_timeout, Duration::from_secs(60));
        assert_eq!(config.idempotency_keys, 7);
        assert_eq!(config.idempotency_ttl, Duration::from_secs(3600));
        assert!(
            config
                .log
                .would_enable("provider::handler", &tracing::Level::DEBUG)
        );
        assert!(!config.log.would_enable("hyper", &tracing::Level::INFO));
        assert_eq!(config.workers, Some(3));
    }

    #[test]
    fn a_rate_above_one_is_rejected_naming_the_variable() {
        let err = config(&[("PROVIDER_SUCCESS_RATE", "1.5")]).unwrap_err();
        assert_eq!(err.name, "PROVIDER_SUCCESS_RATE");
        let line = err.to_string();
        assert!(
            line.starts_with("PROVIDER_SUCCESS_RATE=\"1.5\" is invalid: expected a probability"),
            "{line}"
        );
        assert!(!line.contains('\n'), "one line: {line}");
    }

    #[test]
    fn bad_values_of_each_kind_are_rejected() {
        for (name, value) in [
            ("PROVIDER_LISTEN", "localhost"),
            ("PROVIDER_LISTEN", "0.0.0.0:99999"),
            ("PROVIDER_SUCCESS_RATE", "-0.1"),
            ("PROVIDER_SUCCESS_RATE", "NaN"),
            ("PROVIDER_SEED", "-1"),
            ("PROVIDER_SHUTDOWN_TIMEOUT", "10 parsecs"),
            ("PROVIDER_HEADER_TIMEOUT", "0s"),
            ("PROVIDER_IDEMPOTENCY_KEYS", "many"),
            ("PROVIDER_LOG", "provider=loud"),
            ("PROVIDER_WORKERS", "0"),
            ("PROVIDER_WORKERS", "1025"),
            ("PROVIDER_WORKERS", "two"),
        ] {
            let err = config(&[(name, value)]).expect_err(value);
            assert_eq!(err.name, name, "{err}");
        }
    }

    #[test]
    fn durations_accept_each_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(
            parse_duration("2d")
                .unwrap_err()
                .contains("unknown duration unit")
        );
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn help_lists_every_variable_and_its_default() {
        let help = Config::help();
        for var in VARS {
            let line = help
                .lines()
                .find(|l| l.trim_start().starts_with(var.name))
                .expect(var.name);
            if let Some(default) = var.default {
                assert!(line.contains(&format!("default {default}")), "{line}");
            }
        }
    }
}
