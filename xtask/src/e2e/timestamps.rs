//! Times the real node's timeline reads from the API: pod conditions and events, whose
//! RFC 3339 timestamps become Unix seconds (no date crate for one conversion).

use serde_json::Value;

use super::checks::PROVIDER_SERVICE;
use super::realnode_checks::RealRun;

/// Unix seconds of a pod condition's last transition.
pub fn condition_time(pod: &Value, kind: &str) -> Option<f64> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["lastTransitionTime"].as_str())
        .and_then(unix_seconds)
}

/// Unix seconds of the first event of `reason` about a provider pod.
pub fn event_time(run: &RealRun, pod: &str, reason: &str) -> Option<f64> {
    let selector = format!("involvedObject.name={pod},reason={reason}");
    let json = run
        .cluster
        .kubectl_read(
            run.sh,
            &[
                "get",
                "events",
                "-n",
                PROVIDER_SERVICE,
                "--field-selector",
                &selector,
                "-o",
                "json",
            ],
        )
        .ok()?;
    let list: Value = serde_json::from_str(&json).ok()?;
    list["items"]
        .as_array()?
        .iter()
        .filter_map(|e| e["firstTimestamp"].as_str().or(e["eventTime"].as_str()))
        .filter_map(unix_seconds)
        .reduce(f64::min)
}

/// `2026-12-02T06:17:19Z` (or with fractional seconds) → Unix seconds.
pub fn unix_seconds(text: &str) -> Option<f64> {
    let (date, time) = text.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let s: f64 = t.next()?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some((days * 86400 + h * 3600 + min * 60) as f64 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_timestamps_become_unix_seconds() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(unix_seconds("2024-02-29T12:00:01Z"), Some(1_709_208_001.0));
        assert_eq!(
            unix_seconds("2024-02-29T12:00:01.5Z"),
            Some(1_709_208_001.5)
        );
        assert_eq!(unix_seconds("yesterday"), None);
    }
}
