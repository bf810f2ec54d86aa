//! Benchmarks live in `benches/`: `cargo bench -p webhook-armor-benches`.
