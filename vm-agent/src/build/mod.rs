//! `docker build` with the classic builder's behaviour: the context unpacked on the data disk
//! (less what `.dockerignore` names), the Dockerfile run step by step with stages, each RUN in
//! a crun container on an overlay of the image so far, COPY and ADD written through the same
//! overlay, every step's upper directory a layer. A step's cache key is its parent's key, the
//! instruction and the content of its inputs, so an unchanged step says "Using cache". Output
//! is Docker's JSON message stream (`stream`, `aux`, `error`).

pub mod cache;
pub mod commit;
mod config;
pub mod dockerfile;
mod files;
pub mod layer;
mod network;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::containers::spec;
use crate::copy::{self, Root};
use crate::images::store::{ImageRecord, ImageStore};
use config::metadata;
use dockerfile::{Instruction, expand, words};
use files::{is_archive, resolve_in};

/// What the engine passes from the `/build` query.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BuildParams {
    pub tags: Vec<String>,
    pub dockerfile: String,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub no_cache: bool,
    pub target: String,
    pub mirrors: Vec<String>,
    pub insecure: Vec<String>,
    /// `networkmode`: the network RUN steps join (`""` the default bridge).
    pub network_mode: String,
    /// `extrahosts`: `name:address` lines for RUN steps' `/etc/hosts`.
    pub extra_hosts: Vec<String>,
    /// `cachefrom`: images whose history is the build cache, instead of the local cache.
    pub cache_from: Vec<String>,
}

/// Why a build ended: dockerd's message, and the exit code of the RUN step that failed (the
/// `errorDetail.code` clients read).
#[derive(Debug, Clone, PartialEq)]
pub struct BuildFailure {
    pub message: String,
    pub code: Option<i32>,
}

impl BuildFailure {
    /// The stream's last message, as dockerd writes it.
    pub fn message_json(&self) -> Value {
        let mut detail = json!({ "message": self.message });
        if let Some(code) = self.code {
            detail["code"] = json!(code);
        }
        json!({ "errorDetail": detail, "error": self.message })
    }
}

type Out<'a> = &'a dyn Fn(Value);

fn say(out: Out, text: impl Into<String>) {
    out(json!({ "stream": text.into() }));
}

fn hex_of(s: &str) -> String {
    format!("{:x}", Sha256::digest(s.as_bytes()))
}

/// A stage's image so far.
#[derive(Clone)]
struct State {
    /// The image config document (`config`, `rootfs`, `history`, ...).
    doc: Value,
    layers: Vec<String>,
    /// The cache chain: the base image's ID, then each step's key.
    key: String,
    /// ARGs declared in this stage, with their values.
    args: BTreeMap<String, String>,
    cmd_set: bool,
}

impl State {
    fn config(&mut self) -> &mut serde_json::Map<String, Value> {
        if !self.doc["config"].is_object() {
            self.doc["config"] = json!({});
        }
        self.doc["config"].as_object_mut().expect("an object")
    }

    fn env(&self) -> Vec<String> {
        self.doc["config"]["Env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Variables for expansion: ARGs, then ENV over them.
    fn vars(&self) -> BTreeMap<String, String> {
        let mut v = self.args.clone();
        for e in self.env() {
            if let Some((k, val)) = e.split_once('=') {
                v.insert(k.to_owned(), val.to_owned());
            }
        }
        v
    }

    fn set_env(&mut self, k: &str, v: &str) {
        let mut env = self.env();
        env.retain(|e| e.split('=').next() != Some(k));
        env.push(format!("{k}={v}"));
        self.config().insert("Env".into(), json!(env));
    }

    fn shell(&self) -> Vec<String> {
        self.doc["config"]["Shell"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .filter(|s: &Vec<String>| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    fn workdir(&self) -> String {
        self.doc["config"]["WorkingDir"]
            .as_str()
            .filter(|w| !w.is_empty())
            .unwrap_or("/")
            .to_owned()
    }

    fn history(&mut self, created_by: &str, empty: bool) {
        let entry = json!({
            "created": crate::clock::now(),
            "created_by": created_by,
            "empty_layer": empty,
        });
        match self.doc["history"].as_array_mut() {
            Some(h) => h.push(entry),
            None => self.doc["history"] = json!([entry]),
        }
    }
}

pub struct Builder<'a> {
    store: Arc<ImageStore>,
    work: PathBuf,
    context: PathBuf,
    cache_dir: PathBuf,
    params: BuildParams,
    out: Out<'a>,
    rt: tokio::runtime::Handle,
    stages: Vec<(String, State)>,
    counter: usize,
    /// Files ADD downloaded (never extracted, unlike local archives).
    downloads: Vec<PathBuf>,
    /// Overlays mounted for steps, unmounted before the work directory goes.
    mounts: Vec<PathBuf>,
    /// The exit code of the RUN step that failed, for [`BuildFailure`].
    failed_code: Option<i32>,
    /// The `cachefrom` images (those found), as [`cache::Source`]s.
    sources: Vec<cache::Source>,
}

type R<T> = Result<T, String>;

fn io(what: &str) -> impl FnOnce(std::io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl<'a> Builder<'a> {
    /// Unpacks the context tar at `context_tar` and runs the build; the new image's ID.
    pub fn run(
        store: Arc<ImageStore>,
        data_root: &Path,
        context_tar: &Path,
        params: BuildParams,
        out: Out<'a>,
        rt: tokio::runtime::Handle,
    ) -> Result<String, BuildFailure> {
        // A prune waits for running builds: it must not delete the layers they use.
        let _shared = cache::BUILDS.read().unwrap_or_else(|e| e.into_inner());
        let work = data_root
            .join("build")
            .join(crate::containers::random_hex(8));
        let context = work.join("context");
        std::fs::create_dir_all(&context).map_err(|e| BuildFailure {
            message: format!("preparing the build: {e}"),
            code: None,
        })?;
        let mut b = Builder {
            store,
            context,
            cache_dir: data_root.join("build-cache"),
            params,
            out,
            rt,
            stages: Vec::new(),
            counter: 0,
            downloads: Vec::new(),
            mounts: Vec::new(),
            work: work.clone(),
            failed_code: None,
            sources: Vec::new(),
        };
        let result = b.build(context_tar);
        for m in &b.mounts {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&work);
        result.map_err(|message| BuildFailure {
            message,
            code: b.failed_code,
        })
    }

    fn build(&mut self, context_tar: &Path) -> R<String> {
        let file = std::fs::File::open(context_tar).map_err(io("the build context"))?;
        crate::images::unpack::unpack_layer(file, &self.context)
            .map_err(|e| format!("the build context: {e}"))?;
        let name = if self.params.dockerfile.is_empty() {
            "Dockerfile".to_owned()
        } else {
            self.params.dockerfile.clone()
        };
        let df_path = self.inside_context(&name)?;
        let text = std::fs::read_to_string(&df_path)
            .map_err(|_| format!("Cannot locate specified Dockerfile: {name}"))?;
        // The client left out what `.dockerignore` excludes (the docker CLI and docker-py
        // do); as dockerd, the builder only takes the Dockerfile and `.dockerignore` out of
        // the context when `.dockerignore` names them.
        let rules = std::fs::read_to_string(self.context.join(".dockerignore"))
            .map(|t| layer::ignore_rules(&t))
            .unwrap_or_default();
        for f in [".dockerignore", name.as_str()] {
            if layer::ignored(&rules, f) {
                let path = self.inside_context(f)?;
                let _ = std::fs::remove_file(path);
            }
        }
        self.sources = cache::sources(&self.store, &self.params.cache_from, self.out);
        let instructions = dockerfile::parse(&text).map_err(|e| e.to_string())?;
        let total = instructions.len();
        let mut meta_args: BTreeMap<String, String> = BTreeMap::new();
        let mut current: Option<(String, State)> = None;
        for (i, ins) in instructions.iter().enumerate() {
            say(
                self.out,
                format!("Step {}/{total} : {}\n", i + 1, ins.text()),
            );
            if ins.cmd == "FROM" {
                if let Some(done) = current.take() {
                    if !self.params.target.is_empty() && done.0 == self.params.target {
                        return self.finish(done.1);
                    }
                    self.stages.push(done);
                }
                current = Some(self.from(ins, &meta_args)?);
                continue;
            }
            let Some((_, state)) = current.as_mut() else {
                // ARG before the first FROM.
                for w in words(&ins.rest) {
                    let (k, v) = w.split_once('=').unwrap_or((&w, ""));
                    let v = self
                        .params
                        .build_args
                        .get(k)
                        .cloned()
                        .unwrap_or(v.to_owned());
                    meta_args.insert(k.to_owned(), v);
                }
                continue;
            };
            let mut st = state.clone();
            self.step(ins, &mut st).map_err(|e| {
                if e.starts_with("The command") || e.contains("line ") {
                    e
                } else {
                    format!("{e} (Dockerfile line {})", ins.line)
                }
            })?;
            *state = st;
        }
        let (name, last) = current.expect("parse checks there is a FROM");
        if !self.params.target.is_empty() && name != self.params.target {
            return Err(format!(
                "failed to reach build target {} in Dockerfile",
                self.params.target
            ));
        }
        self.finish(last)
    }

    /// A path named relative to the context, refused when it leads outside it.
    fn inside_context(&self, rel: &str) -> R<PathBuf> {
        let joined = self.context.join(rel.trim_start_matches('/'));
        let real = std::fs::canonicalize(&joined)
            .or_else(|_| {
                // Not there: judge by the cleaned path.
                let clean = spec::clean_path(&format!("/{rel}"));
                Ok::<_, std::io::Error>(self.context.join(clean.trim_start_matches('/')))
            })
            .map_err(io(rel))?;
        let root = std::fs::canonicalize(&self.context).map_err(io("the build context"))?;
        if !real.starts_with(&root) {
            return Err(format!("forbidden path outside the build context: {rel}"));
        }
        Ok(real)
    }

    fn from(
        &mut self,
        ins: &Instruction,
        meta_args: &BTreeMap<String, String>,
    ) -> R<(String, State)> {
        let ws = words(&expand(&ins.rest, meta_args));
        let (image, name) = match ws.as_slice() {
            [image] => (image.clone(), String::new()),
            [image, kw, name] if kw.eq_ignore_ascii_case("as") => {
                (image.clone(), name.to_ascii_lowercase())
            }
            _ => {
                return Err(format!(
                    "FROM requires either one or three arguments (line {})",
                    ins.line
                ));
            }
        };
        let state = if let Some((_, st)) = self
            .stages
            .iter()
            .find(|(n, _)| !n.is_empty() && *n == image.to_ascii_lowercase())
        {
            let mut st = st.clone();
            st.args.clear();
            st.cmd_set = false;
            st
        } else if image == "scratch" {
            State {
                doc: json!({"architecture": "amd64", "os": "linux", "config": {}}),
                layers: Vec::new(),
                key: "scratch".into(),
                args: BTreeMap::new(),
                cmd_set: false,
            }
        } else {
            let img = self.base_image(&image)?;
            let doc: Value =
                serde_json::from_slice(&self.store.blob(&img.id).map_err(|e| e.to_string())?)
                    .map_err(|e| format!("image {image}: {e}"))?;
            State {
                doc,
                layers: img.layers.clone(),
                key: img.id.clone(),
                args: BTreeMap::new(),
                cmd_set: false,
            }
        };
        say(self.out, format!(" ---> {}\n", short(&state.key)));
        Ok((name, state))
    }

    /// The base image, pulled when it is not here yet.
    fn base_image(&self, image: &str) -> R<ImageRecord> {
        if let Ok(img) = self.store.resolve(image) {
            return Ok(img);
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let req = crate::images::pull::PullRequest {
            reference: image.to_owned(),
            auth: oci_client::secrets::RegistryAuth::Anonymous,
            mirrors: self.params.mirrors.clone(),
            insecure: self.params.insecure.clone(),
            proxy: Some(crate::images::pull::PROXY_URL.to_owned()),
        };
        // The pull runs on the runtime; its progress is written from this (blocking) thread,
        // as the output callback blocks.
        let job = self
            .rt
            .spawn(crate::images::pull::pull(self.store.clone(), req, tx));
        while let Some(p) = rx.blocking_recv() {
            if p.id.is_empty() {
                say(self.out, format!("{}\n", p.status));
            }
        }
        self.rt
            .block_on(job)
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// The step from a `cachefrom` image that continues `st` with `ins` (recorded as `by`,
    /// or for a config instruction as [`metadata`] records it): the stage's config document
    /// and layers after it.
    fn cache_from_sources(
        &self,
        ins: &Instruction,
        st: &State,
        by: &str,
    ) -> R<Option<(Value, Vec<String>)>> {
        let mut next = st.clone();
        let by = if by.is_empty() {
            // A config step: applied here (it is cheap), its history entry taken from the source.
            metadata(ins, &mut next)?;
            next.doc["history"]
                .as_array()
                .and_then(|h| h.last())
                .and_then(|e| e["created_by"].as_str())
                .unwrap_or_default()
                .to_owned()
        } else {
            by.to_owned()
        };
        let history = st.doc["history"].as_array().cloned().unwrap_or_default();
        let Some((history, layers)) = cache::from_sources(&self.sources, &history, &st.layers, &by)
        else {
            return Ok(None);
        };
        next.doc["history"] = json!(history);
        next.doc["rootfs"] = json!({"type": "layers", "diff_ids": layers});
        Ok(Some((next.doc, layers)))
    }

    fn cache_path(&self, key: &str) -> PathBuf {
        self.cache_dir.join(format!("{key}.json"))
    }

    fn cached(&self, key: &str) -> Option<(Value, Vec<String>)> {
        if self.params.no_cache {
            return None;
        }
        let v: Value = serde_json::from_slice(&std::fs::read(self.cache_path(key)).ok()?).ok()?;
        let layers: Vec<String> = serde_json::from_value(v["layers"].clone()).ok()?;
        layers
            .iter()
            .all(|l| self.store.has_snapshot(l))
            .then(|| (v["doc"].clone(), layers))
    }

    fn remember(&self, key: &str, st: &State) {
        let _ = std::fs::create_dir_all(&self.cache_dir);
        let v = json!({ "doc": st.doc, "layers": st.layers });
        let _ = crate::images::store::write_atomic(
            &self.cache_path(key),
            &serde_json::to_vec(&v).unwrap_or_default(),
        );
    }

    fn step(&mut self, ins: &Instruction, st: &mut State) -> R<()> {
        let vars = st.vars();
        let arg = |s: &str| expand(s, &vars);
        // The inputs' digest joins the key for COPY and ADD; RUN sees the build args.
        let mut extra = String::new();
        let mut sources = Vec::new();
        match ins.cmd.as_str() {
            "COPY" | "ADD" => {
                let (srcs, from_key) = self.copy_sources(ins, &vars)?;
                extra = layer::content_digest(&srcs).map_err(io("reading the COPY sources"))?;
                extra.push_str(&from_key.unwrap_or_default());
                sources = srcs;
            }
            "RUN" => {
                extra = format!("{:?}", st.args);
            }
            "ARG" => {
                for w in words(&arg(&ins.rest)) {
                    let (k, v) = w.split_once('=').unwrap_or((&w, ""));
                    let v = self
                        .params
                        .build_args
                        .get(k)
                        .cloned()
                        .unwrap_or(v.to_owned());
                    st.args.insert(k.to_owned(), v);
                }
                extra = format!("{:?}", st.args);
            }
            _ => {}
        }
        let key = hex_of(&format!("{}\n{}\n{extra}", st.key, ins.text()));
        // What the step's history entry says, which `cachefrom` images are matched by.
        let by = match ins.cmd.as_str() {
            "RUN" => format!("/bin/sh -c {}", ins.rest),
            "COPY" | "ADD" => {
                let ws = ins
                    .json
                    .clone()
                    .unwrap_or_else(|| words(&expand(&ins.rest, &vars)));
                let kind = match sources.as_slice() {
                    [one] if one.is_file() => "file",
                    _ => "dir",
                };
                format!(
                    "/bin/sh -c #(nop) {} {kind}:{} in {} ",
                    ins.cmd,
                    hex_of(&extra),
                    ws.last().map_or("", String::as_str)
                )
            }
            _ => String::new(),
        };
        let hit = if self.params.cache_from.is_empty() {
            self.cached(&key)
        } else {
            // As dockerd: with `cachefrom`, those images are the cache, not the local one.
            self.cache_from_sources(ins, st, &by)?
        };
        if let Some((doc, layers)) = hit {
            st.doc = doc;
            st.layers = layers;
            st.key = key;
            if ins.cmd == "CMD" {
                st.cmd_set = true;
            }
            say(self.out, " ---> Using cache\n");
            say(self.out, format!(" ---> {}\n", short(&st.key)));
            return Ok(());
        }
        match ins.cmd.as_str() {
            "RUN" => self.run_step(ins, st, &by)?,
            "COPY" | "ADD" => self.copy_step(ins, st, &sources, &vars, &by)?,
            _ => metadata(ins, st)?,
        }
        st.key = key.clone();
        self.remember(&key, st);
        say(self.out, format!(" ---> {}\n", short(&st.key)));
        Ok(())
    }

    /// Mounts an overlay of `st`'s layers with a fresh upper directory; (merged, upper).
    fn mount(&mut self, st: &State) -> R<(PathBuf, PathBuf)> {
        self.counter += 1;
        let dir = self.work.join(format!("step{}", self.counter));
        let (merged, upper, work, init) = (
            dir.join("merged"),
            dir.join("upper"),
            dir.join("work"),
            dir.join("init"),
        );
        for d in [&merged, &upper, &work, &init] {
            std::fs::create_dir_all(d).map_err(io("preparing a step"))?;
        }
        // The mount points crun needs, so they stay out of the step's layer.
        for d in ["proc", "sys", "dev", "etc"] {
            std::fs::create_dir_all(init.join(d)).map_err(io("preparing a step"))?;
        }
        for f in ["etc/resolv.conf", "etc/hosts", "etc/hostname"] {
            std::fs::write(init.join(f), b"").map_err(io("preparing a step"))?;
        }
        let mut lower = vec![init.display().to_string()];
        lower.extend(
            st.layers
                .iter()
                .rev()
                .map(|l| self.store.snapshot_dir(l).join("fs").display().to_string()),
        );
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            upper.display(),
            work.display()
        );
        nix::mount::mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(opts.as_str()),
        )
        .map_err(|e| format!("mounting the build step's root: {e}"))?;
        self.mounts.push(merged.clone());
        Ok((merged, upper))
    }

    fn unmount_and_commit(
        &mut self,
        merged: &Path,
        upper: &Path,
        st: &mut State,
        by: &str,
    ) -> R<()> {
        let _ = nix::mount::umount2(merged, nix::mount::MntFlags::MNT_DETACH);
        match layer::commit(&self.store, upper).map_err(io("saving the step's layer"))? {
            Some(diff) => {
                st.layers.push(diff.clone());
                st.doc["rootfs"] = json!({"type": "layers", "diff_ids": st.layers});
                st.history(by, false);
            }
            None => st.history(by, true),
        }
        Ok(())
    }

    fn run_step(&mut self, ins: &Instruction, st: &mut State, by: &str) -> R<()> {
        // RUN's flags are BuildKit's; the classic builder refuses them, as dockerd's does.
        if let Some((k, _)) = ins.flags.first() {
            return Err(match k.as_str() {
                "mount" | "network" | "security" => format!(
                    "the --{k} option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit enabled"
                ),
                _ => format!("Unknown flag: {k}"),
            });
        }
        let args = match &ins.json {
            Some(list) => list.clone(),
            None => {
                let mut l = st.shell();
                l.push(ins.rest.clone());
                l
            }
        };
        let (merged, upper) = self.mount(st)?;
        let id = format!("build-{}", crate::containers::random_hex(6));
        say(self.out, format!(" ---> Running in {}\n", &id[6..]));
        let mut env = st.env();
        for (k, v) in &st.args {
            if !env.iter().any(|e| e.split('=').next() == Some(k)) {
                env.push(format!("{k}={v}"));
            }
        }
        // Its own namespace on the default bridge, never the VM's (see `network`).
        let step_dir = merged.parent().expect("a step dir").to_owned();
        let net = match network::StepNetwork::attach(
            &id,
            &id[6..],
            &step_dir,
            &self.params.network_mode,
            &self.params.extra_hosts,
        ) {
            Ok(net) => net,
            Err(e) => {
                let _ = nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH);
                return Err(e);
            }
        };
        let cfg = spec::ContainerConfig {
            args: args.clone(),
            env,
            working_dir: st.workdir(),
            user: st.doc["config"]["User"].as_str().unwrap_or("").to_owned(),
            hostname: id[6..].to_owned(),
            netns: net.netns.clone(),
            etc_files: net.etc_files.clone(),
            ..Default::default()
        };
        let mut exit_code = None;
        let result = (|| {
            let spec = spec::build_spec(&cfg, &merged, &format!("/berth/{id}"))
                .map_err(|e| e.to_string())?;
            let bundle = merged.parent().expect("a step dir").join("bundle");
            std::fs::create_dir_all(&bundle).map_err(io("the step's bundle"))?;
            spec::write_spec(&spec, &bundle).map_err(|e| e.to_string())?;
            let mut child = crate::containers::shim::crun(&["run", "--bundle"])
                .arg(&bundle)
                .arg(&id)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(io("starting crun"))?;
            let stderr = child.stderr.take().expect("piped");
            let (tx, rx) = std::sync::mpsc::channel::<String>();
            let tx2 = tx.clone();
            // As dockerd, a step's standard error comes in red.
            let t = std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let _ = tx2.send(format!("\x1b[91m{line}\n\x1b[0m"));
                }
            });
            let stdout = child.stdout.take().expect("piped");
            let t2 = std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let _ = tx.send(format!("{line}\n"));
                }
            });
            for text in rx {
                say(self.out, text);
            }
            let _ = (t.join(), t2.join());
            let status = child.wait().map_err(io("waiting for crun"))?;
            let _ = crate::containers::shim::crun(&["delete", "-f", &id]).status();
            match status.code() {
                Some(0) => Ok(()),
                code => {
                    let code = code.unwrap_or(-1);
                    exit_code = Some(code);
                    Err(format!(
                        "The command '{}' returned a non-zero code: {code}",
                        args.join(" "),
                    ))
                }
            }
        })();
        drop(net);
        self.failed_code = exit_code;
        if let Err(e) = result {
            let _ = nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH);
            return Err(e);
        }
        say(
            self.out,
            format!(" ---> Removed intermediate container {}\n", &id[6..]),
        );
        self.unmount_and_commit(&merged, &upper, st, by)
    }

    /// The paths a COPY or ADD reads, and the cache key of the stage or image it reads them
    /// from (`--from`).
    fn copy_sources(
        &mut self,
        ins: &Instruction,
        vars: &BTreeMap<String, String>,
    ) -> R<(Vec<PathBuf>, Option<String>)> {
        let mut ws = ins
            .json
            .clone()
            .unwrap_or_else(|| words(&expand(&ins.rest, vars)));
        if ws.len() < 2 {
            return Err(format!("{} requires at least two arguments", ins.cmd));
        }
        ws.pop();
        if let Some(from) = ins.flag("from") {
            let from = from.to_ascii_lowercase();
            let stage = match from.parse::<usize>() {
                Ok(i) => self.stages.get(i).map(|(_, s)| s.clone()),
                Err(_) => self
                    .stages
                    .iter()
                    .find(|(n, _)| *n == from)
                    .map(|(_, s)| s.clone()),
            };
            let stage = match stage {
                Some(s) => s,
                None => {
                    let img = self.base_image(&from)?;
                    State {
                        doc: json!({}),
                        layers: img.layers.clone(),
                        key: img.id,
                        args: BTreeMap::new(),
                        cmd_set: false,
                    }
                }
            };
            // The stage's files, through a read-only view of its layers.
            let (merged, _upper) = self.mount(&stage)?;
            let mut paths = Vec::new();
            for w in ws {
                let p = resolve_in(&merged, &w)
                    .ok_or_else(|| format!("COPY failed: stat {w}: file does not exist"))?;
                if !p.exists() {
                    return Err(format!("COPY failed: stat {w}: file does not exist"));
                }
                paths.push(p);
            }
            return Ok((paths, Some(stage.key)));
        }
        let mut paths = Vec::new();
        for w in ws {
            if w.starts_with("http://") || w.starts_with("https://") {
                if ins.cmd != "ADD" {
                    return Err("COPY failed: source can't be a URL for COPY".into());
                }
                // Downloaded at every build, as the classic builder does; the content joins
                // the cache key, so an unchanged file still hits the cache.
                self.counter += 1;
                let dir = self.work.join(format!("download-{}", self.counter));
                std::fs::create_dir_all(&dir).map_err(io("preparing a download"))?;
                let file = files::download(&self.rt, &w, &dir)?;
                self.downloads.push(file.clone());
                paths.push(file);
                continue;
            }
            let matches = self.context_glob(&w)?;
            if matches.is_empty() {
                return Err(format!(
                    "COPY failed: file not found in build context or excluded by .dockerignore: stat {w}: file does not exist"
                ));
            }
            paths.extend(matches);
        }
        Ok((paths, None))
    }

    fn context_glob(&self, pattern: &str) -> R<Vec<PathBuf>> {
        let mut depth = 0i32;
        for c in pattern.split('/') {
            match c {
                "" | "." => {}
                ".." => depth -= 1,
                _ => depth += 1,
            }
            if depth < 0 {
                return Err(format!(
                    "COPY failed: forbidden path outside the build context: {pattern}"
                ));
            }
        }
        let clean = spec::clean_path(&format!("/{pattern}"));
        if !pattern.contains(['*', '?', '[']) {
            let p = self.inside_context(pattern)?;
            return Ok(if std::fs::symlink_metadata(&p).is_ok() {
                vec![p]
            } else {
                vec![]
            });
        }
        let rel = clean.trim_start_matches('/');
        let (dir, pat) = rel.rsplit_once('/').unwrap_or(("", rel));
        let base = self.inside_context(dir)?;
        let mut out: Vec<PathBuf> = std::fs::read_dir(&base)
            .map(|d| {
                d.flatten()
                    .filter(|e| layer::glob(pat, &e.file_name().to_string_lossy()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        Ok(out)
    }

    fn copy_step(
        &mut self,
        ins: &Instruction,
        st: &mut State,
        sources: &[PathBuf],
        vars: &BTreeMap<String, String>,
        by: &str,
    ) -> R<()> {
        let ws = ins
            .json
            .clone()
            .unwrap_or_else(|| words(&expand(&ins.rest, vars)));
        let dest_raw = ws.last().cloned().unwrap_or_default();
        let dest = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            format!("{}/{dest_raw}", st.workdir())
        };
        let to_dir = dest_raw.ends_with('/') || sources.len() > 1 || dest_raw == ".";
        let (merged, upper) = self.mount(st)?;
        let result = (|| {
            let owner = match ins.flag("chown") {
                Some(user) => {
                    let (uid, gid, _) = spec::resolve_user(&merged, &expand(user, vars))
                        .map_err(|e| e.to_string())?;
                    Some((uid, gid))
                }
                None => Some((0, 0)),
            };
            // Every write below resolves inside the step's root: links a RUN step planted
            // lead only elsewhere in the image.
            let root = Root::open(&merged).map_err(io("opening the image"))?;
            let target = copy::clean_rel(&dest);
            for src in sources {
                let md = std::fs::symlink_metadata(src).map_err(io("a COPY source"))?;
                if md.is_dir() {
                    root.create_dir_all(&target)
                        .map_err(io("creating the destination"))?;
                    copy::copy_into(src, &root, &target, owner).map_err(io("copying"))?;
                } else if ins.cmd == "ADD" && is_archive(src) && !self.downloads.contains(src) {
                    root.create_dir_all(&target)
                        .map_err(io("creating the destination"))?;
                    let tmp = merged.parent().expect("a step dir").join("add");
                    let _ = std::fs::remove_dir_all(&tmp);
                    std::fs::create_dir_all(&tmp).map_err(io("extracting"))?;
                    let f = std::fs::File::open(src).map_err(io("the archive"))?;
                    crate::images::unpack::unpack_layer(f, &tmp)
                        .map_err(|e| format!("ADD failed: extracting {}: {e}", src.display()))?;
                    copy::copy_into(&tmp, &root, &target, None).map_err(io("copying"))?;
                } else {
                    let file_target = if to_dir || root.is_dir(&target) {
                        root.create_dir_all(&target)
                            .map_err(io("creating the destination"))?;
                        let name = src.file_name().unwrap_or_default().to_string_lossy();
                        format!("{target}/{name}")
                    } else {
                        let parent = target.rsplit_once('/').map_or("", |(p, _)| p);
                        root.create_dir_all(parent)
                            .map_err(io("creating the destination"))?;
                        target.clone()
                    };
                    copy::copy_entry(src, &root, &file_target, owner).map_err(io("copying"))?;
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH);
            return Err(e);
        }
        self.unmount_and_commit(&merged, &upper, st, by)
    }

    fn finish(&mut self, mut st: State) -> R<String> {
        if !self.params.labels.is_empty() {
            let mut labels = st.doc["config"]["Labels"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for (k, v) in &self.params.labels {
                labels.insert(k.clone(), json!(v));
            }
            st.config().insert("Labels".into(), Value::Object(labels));
        }
        st.doc["rootfs"] = json!({"type": "layers", "diff_ids": st.layers});
        st.doc["created"] = json!(crate::clock::now());
        st.doc["architecture"] = json!("amd64");
        st.doc["os"] = json!("linux");
        let config = serde_json::to_vec(&st.doc).map_err(|e| e.to_string())?;
        let mut tags = Vec::new();
        for t in &self.params.tags {
            let r = crate::images::reference::parse(t).map_err(|e| e.to_string())?;
            tags.extend(crate::images::reference::familiar_tag(&r));
        }
        let id = self
            .store
            .add_config(&config, tags.clone())
            .map_err(|e| e.to_string())?
            .id;
        (self.out)(json!({"aux": {"ID": id}}));
        say(self.out, format!("Successfully built {}\n", short(&id)));
        for t in &tags {
            crate::events::emit(
                "image",
                "tag",
                &id,
                BTreeMap::from([("name".into(), t.clone())]),
            );
            say(self.out, format!("Successfully tagged {t}\n"));
        }
        Ok(id)
    }
}

fn short(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}
