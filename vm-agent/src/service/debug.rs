//! `Debug`: fault injection (the agent kills itself so init's restart and the host's reconnect
//! can be checked) and small file probes confined to `<data disk>/debug`.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use berth_agent_proto::v1::{
    CrashRequest, CrashResponse, ReadFileRequest, ReadFileResponse, WriteFileRequest,
    WriteFileResponse, debug_server::Debug,
};
use tonic::{Request, Response, Status};

use crate::disk;

pub struct DebugService;

/// Resolves a client path under the debug directory; anything that could leave it is refused.
fn debug_path(rel: &str) -> Result<PathBuf, Status> {
    let rel = Path::new(rel);
    let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
    if rel.as_os_str().is_empty() || !plain {
        return Err(Status::invalid_argument(format!(
            "path {} must be relative with no '..'",
            rel.display()
        )));
    }
    Ok(Path::new(disk::MOUNT_POINT).join("debug").join(rel))
}

#[tonic::async_trait]
impl Debug for DebugService {
    async fn crash(
        &self,
        request: Request<CrashRequest>,
    ) -> Result<Response<CrashResponse>, Status> {
        let signal = match request.into_inner().signal {
            0 => libc::SIGKILL,
            n => n,
        };
        tracing::warn!(signal, "crash requested by the host");
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            // SAFETY: kill(2) on our own pid with a signal number; no memory is involved.
            unsafe {
                libc::kill(libc::getpid(), signal);
            }
        });
        Ok(Response::new(CrashResponse {}))
    }

    async fn write_file(
        &self,
        request: Request<WriteFileRequest>,
    ) -> Result<Response<WriteFileResponse>, Status> {
        let req = request.into_inner();
        let path = debug_path(&req.path)?;
        let write = || -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut file = std::fs::File::create(&path)?;
            file.write_all(&req.data)?;
            if req.sync {
                file.sync_all()?;
                if let Some(parent) = path.parent() {
                    std::fs::File::open(parent)?.sync_all()?;
                }
            }
            Ok(())
        };
        write().map_err(|e| Status::internal(format!("writing {}: {e}", path.display())))?;
        Ok(Response::new(WriteFileResponse {}))
    }

    async fn read_file(
        &self,
        request: Request<ReadFileRequest>,
    ) -> Result<Response<ReadFileResponse>, Status> {
        let path = debug_path(&request.into_inner().path)?;
        match std::fs::read(&path) {
            Ok(data) => Ok(Response::new(ReadFileResponse { data })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Status::not_found(format!(
                "{} does not exist",
                path.display()
            ))),
            Err(e) => Err(Status::internal(format!("reading {}: {e}", path.display()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_the_debug_dir() {
        assert!(debug_path("a/b.txt").is_ok());
        assert!(debug_path("../etc/passwd").is_err());
        assert!(debug_path("/etc/passwd").is_err());
        assert!(debug_path("a/../../x").is_err());
        assert!(debug_path("").is_err());
    }
}
