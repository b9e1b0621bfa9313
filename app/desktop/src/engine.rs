//! The engine inside the app: the same supervisor and API socket as `berth engine`, started
//! when the app opens and stopped cleanly (containers with their stop timeouts, then the VM)
//! when it quits. The UI and the tray both go through [`Engine`]; the Docker socket stays open
//! for the docker CLI while the app runs.

use std::path::PathBuf;
use std::sync::Arc;

use berth_engine::api;
use berth_engine::paths::Paths;
use berth_engine::vm::{Supervisor, VmState, VmStatus};
use tokio::sync::{Mutex, watch};

use crate::dto::{EngineState, EngineStatus};
use crate::error::{AppError, ErrorCode};

#[derive(Clone)]
pub struct Engine {
    sup: Supervisor,
    socket: PathBuf,
    /// Set once the API socket serves; a second serve is refused.
    stop_api: Arc<Mutex<Option<tokio::sync::oneshot::Sender<()>>>>,
}

impl Engine {
    /// The engine for `$BERTH_HOME` (or the default home); nothing starts yet.
    pub fn from_env() -> Result<Self, String> {
        let paths = Paths::from_env().map_err(|e| e.to_string())?;
        paths.ensure().map_err(|e| e.to_string())?;
        berth_engine::limits::raise_fd_limit();
        let socket = paths.docker_socket();
        Ok(Engine {
            sup: Supervisor::new(paths),
            socket,
            stop_api: Arc::new(Mutex::new(None)),
        })
    }

    pub fn supervisor(&self) -> &Supervisor {
        &self.sup
    }

    /// A Docker API client on the engine's socket (which must exist: bollard checks).
    pub fn docker(&self) -> Result<bollard::Docker, AppError> {
        bollard::Docker::connect_with_unix(
            &self.socket.display().to_string(),
            600,
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(AppError::from)
    }

    /// Serves the Docker API socket (mode 0600) until [`Engine::shutdown`].
    pub async fn serve_api(&self) -> Result<(), AppError> {
        let mut slot = self.stop_api.lock().await;
        if slot.is_some() {
            return Ok(());
        }
        let listener = api::bind(&self.socket)
            .await
            .map_err(|e| AppError::new(ErrorCode::Conflict, e.to_string()))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(api::serve(listener, self.sup.clone(), async {
            let _ = rx.await;
        }));
        *slot = Some(tx);
        tracing::info!("Docker API on unix://{}", self.socket.display());
        Ok(())
    }

    pub fn status(&self) -> EngineStatus {
        to_status(&self.sup.status(), &self.socket)
    }

    /// Every change of the engine's state, starting with the current one.
    pub fn subscribe(&self) -> watch::Receiver<VmStatus> {
        self.sup.subscribe()
    }

    /// Calls `on` with the current state, then with every change, until it returns false or
    /// the engine goes away.
    pub fn follow(&self, mut on: impl FnMut(EngineStatus) -> bool + Send + 'static) {
        let mut rx = self.subscribe();
        let socket = self.socket.clone();
        tokio::spawn(async move {
            loop {
                if !on(to_status(&rx.borrow_and_update(), &socket)) || rx.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// Boots the VM (a no-op while it runs or starts).
    pub async fn start(&self) -> Result<(), AppError> {
        if matches!(
            self.sup.status().state,
            VmState::Running | VmState::Starting
        ) {
            return Ok(());
        }
        self.sup
            .start()
            .await
            .map(|_| ())
            .map_err(|e| AppError::new(ErrorCode::Internal, e.to_string()))
    }

    /// Stops the containers (each with its stop timeout) and shuts the VM down.
    pub async fn stop(&self) -> Result<(), AppError> {
        if self.sup.status().state == VmState::Stopped {
            return Ok(());
        }
        self.sup
            .stop()
            .await
            .map_err(|e| AppError::new(ErrorCode::Internal, e.to_string()))
    }

    pub async fn restart(&self) -> Result<(), AppError> {
        self.stop().await?;
        self.start().await
    }

    /// Before the app exits: the VM down, the socket closed and removed.
    pub async fn shutdown(&self) {
        if let Err(e) = self.stop().await {
            tracing::warn!("stopping the engine: {e}");
        }
        if let Some(tx) = self.stop_api.lock().await.take() {
            let _ = tx.send(());
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Fails with `engine-not-running` unless the VM runs.
    pub fn require_running(&self) -> Result<(), AppError> {
        match self.sup.status().state {
            VmState::Running => Ok(()),
            other => Err(AppError::new(
                ErrorCode::EngineNotRunning,
                format!("the engine is {other}; start it first"),
            )),
        }
    }
}

pub fn to_status(s: &VmStatus, socket: &std::path::Path) -> EngineStatus {
    let state = match s.state {
        VmState::Starting => EngineState::Starting,
        VmState::Running => EngineState::Running,
        VmState::Stopping => EngineState::Stopping,
        VmState::Stopped => EngineState::Stopped,
        VmState::Failed => EngineState::Error,
    };
    EngineStatus {
        state,
        detail: s.reason.clone(),
        socket: format!("unix://{}", socket.display()),
        backend: s.backend.map(|b| b.to_string()),
        boot_ms: s.boot.as_ref().map(|b| b.agent_ready_ms as f64),
        fallback: s.fallback.clone(),
    }
}
