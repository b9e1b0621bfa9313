//! The .deb that `make package` builds: its contents, then a real `dpkg -i` on this machine,
//! `berth doctor` from the installed paths (the guest image and vhost-device-vsock found where
//! the package put them, with nothing from the source tree or ~/.cargo in reach), and removal.

use std::path::PathBuf;
use std::process::Command;

use berth_tests::root;

fn deb() -> PathBuf {
    let dir = root().join("target/release/bundle/deb");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}; run `make package`", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    debs.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    debs.pop()
        .unwrap_or_else(|| panic!("no .deb in {}; run `make package`", dir.display()))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed: {text}");
    text
}

/// Removes the package however the test ends.
struct Installed;
impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["-r", "berth"]).output();
    }
}

#[test]
fn the_deb_installs_and_berth_doctor_finds_everything_in_place() {
    let deb = deb();
    let contents = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for path in [
        "usr/bin/berth-desktop",
        "usr/bin/berth",
        "usr/lib/berth/guest/vmlinuz",
        "usr/lib/berth/guest/initramfs",
        "usr/lib/berth/bin/vhost-device-vsock",
        "usr/lib/berth/bin/virtiofsd",
        "usr/share/applications/Berth.desktop",
    ] {
        assert!(
            contents
                .lines()
                .any(|l| l.ends_with(&format!(" {path}")) || l.ends_with(&format!(" ./{path}"))),
            "{path} is not in {}:\n{contents}",
            deb.display()
        );
    }
    let fields = run(Command::new("dpkg-deb").arg("-f").arg(&deb));
    assert!(fields.contains("Package: berth\n"), "{fields}");
    for dep in [
        "qemu-system-x86",
        "passt",
        "libwebkit2gtk-4.1-0",
        "libseccomp2",
    ] {
        assert!(fields.contains(dep), "Depends lacks {dep}: {fields}");
    }

    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "dpkg -i needs root (make test runs as root on CI)");
    run(Command::new("dpkg").arg("-i").arg(&deb));
    let _installed = Installed;
    let home = tempfile::tempdir().unwrap();
    let out = Command::new("/usr/bin/berth")
        .arg("doctor")
        .env_clear()
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .env("HOME", home.path())
        .env("BERTH_HOME", home.path().join("berth"))
        .current_dir(home.path())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "berth doctor from the package: {text}"
    );
    let line = |name: &str| {
        text.lines()
            .find(|l| l.contains(&format!("] {name} ")))
            .unwrap_or_else(|| panic!("no {name} line: {text}"))
            .to_owned()
    };
    assert!(
        line("guest image").contains("/usr/lib/berth/guest"),
        "{text}"
    );
    assert!(
        line("vhost-device-vsock").contains("/usr/lib/berth/bin/vhost-device-vsock"),
        "{text}"
    );
    assert!(line("passt").starts_with("[ok"), "{text}");
    assert!(
        line("virtiofsd").contains("/usr/lib/berth/bin/virtiofsd"),
        "{text}"
    );
    // The app's libraries all resolve.
    let ldd = run(Command::new("ldd").arg("/usr/bin/berth-desktop"));
    assert!(!ldd.contains("not found"), "{ldd}");
}
