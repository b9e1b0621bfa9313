//! Pushes the suites' busybox test image to a registry: `cargo run -p berth-tests --example seed -- PORT REPO TAG`.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args
        .get(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: seed PORT REPO TAG");
    let reg = berth_tests::registry::Registry::attach(port);
    let digest = reg.push(
        &args[2],
        &args[3],
        &berth_tests::registry::busybox_layers(),
        berth_tests::registry::busybox_config(),
    );
    println!("{digest}");
}
