//! Prints the policy-check figure for a synthetic platform: `cargo run -p policies --release
//! --example bench -- [services]` (default 1000).

fn main() -> Result<(), policies::Error> {
    let services = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    println!("{}", policies::bench::measure(services, 5)?);
    Ok(())
}
