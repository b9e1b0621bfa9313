//! `berth-desktop`: the desktop app. Everything lives in the library so tests reach it.

fn main() {
    berth_desktop::run();
}
