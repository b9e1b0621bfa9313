//! Terminals into containers: an exec of the container's shell with a TTY, its output streamed
//! to the UI's xterm.js over a channel, keystrokes and window sizes sent back by commands. One
//! session per open terminal; closing it ends the shell.

use std::collections::HashMap;
use std::pin::Pin;

use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;
use serde::Serialize;
use specta::Type;
use tauri::State;
use tauri::ipc::Channel;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::engine::Engine;
use crate::error::{AppError, ErrorCode};

/// What a terminal streams: output, then how the shell ended.
#[derive(Debug, Clone, Serialize, Type)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum TerminalOutput {
    Data { text: String },
    Exit { code: Option<i32> },
}

struct Session {
    exec: String,
    input: Pin<Box<dyn AsyncWrite + Send>>,
    reader: tokio::task::AbortHandle,
}

#[derive(Default)]
pub struct Terminals {
    sessions: tokio::sync::Mutex<HashMap<String, Session>>,
}

/// The shell a user expects: bash where the image has it, else sh.
const SHELL: &str = "if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi";

/// Decodes terminal bytes as UTF-8 across chunk boundaries: a character split between two
/// chunks waits in `carry` for its end.
pub fn take_utf8(carry: &mut Vec<u8>, bytes: &[u8]) -> String {
    carry.extend_from_slice(bytes);
    let keep_from = match std::str::from_utf8(carry) {
        Ok(_) => carry.len(),
        // An incomplete sequence at the end: hold it back.
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        // Invalid bytes: shown as replacement characters.
        Err(_) => carry.len(),
    };
    let rest = carry.split_off(keep_from);
    let text = String::from_utf8_lossy(carry).into_owned();
    *carry = rest;
    text
}

/// Starts a shell in container `id` with a `cols` x `rows` TTY; returns the session.
#[tauri::command]
#[specta::specta]
pub async fn open_terminal(
    engine: State<'_, Engine>,
    terminals: State<'_, Terminals>,
    id: String,
    cols: u16,
    rows: u16,
    on_output: Channel<TerminalOutput>,
) -> Result<String, AppError> {
    engine.require_running()?;
    let docker = engine.docker()?;
    let exec = docker
        .create_exec(
            &id,
            CreateExecOptions {
                attach_stdin: Some(true),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(true),
                env: Some(vec!["TERM=xterm-256color"]),
                cmd: Some(vec!["sh", "-c", SHELL]),
                ..Default::default()
            },
        )
        .await?;
    let started = docker
        .start_exec(
            &exec.id,
            Some(StartExecOptions {
                detach: false,
                tty: true,
                output_capacity: None,
            }),
        )
        .await?;
    let StartExecResults::Attached { mut output, input } = started else {
        return Err(AppError::new(
            ErrorCode::Internal,
            "the exec started detached",
        ));
    };
    let _ = docker
        .resize_exec(
            &exec.id,
            ResizeExecOptions {
                height: rows,
                width: cols,
            },
        )
        .await;
    let exec_id = exec.id.clone();
    let reader = tokio::spawn(async move {
        let mut carry = Vec::new();
        while let Some(Ok(chunk)) = output.next().await {
            let text = take_utf8(&mut carry, &chunk.into_bytes());
            if !text.is_empty() && on_output.send(TerminalOutput::Data { text }).is_err() {
                return;
            }
        }
        let code = docker
            .inspect_exec(&exec_id)
            .await
            .ok()
            .and_then(|i| i.exit_code)
            .map(|c| c as i32);
        let _ = on_output.send(TerminalOutput::Exit { code });
    });
    terminals.sessions.lock().await.insert(
        exec.id.clone(),
        Session {
            exec: exec.id.clone(),
            input,
            reader: reader.abort_handle(),
        },
    );
    Ok(exec.id)
}

fn no_session(session: &str) -> AppError {
    AppError::new(
        ErrorCode::NotFound,
        format!("no terminal session {session}"),
    )
}

/// Keystrokes (as xterm.js hands them over) into the terminal.
#[tauri::command]
#[specta::specta]
pub async fn terminal_input(
    terminals: State<'_, Terminals>,
    session: String,
    data: String,
) -> Result<(), AppError> {
    let mut sessions = terminals.sessions.lock().await;
    let s = sessions
        .get_mut(&session)
        .ok_or_else(|| no_session(&session))?;
    s.input
        .write_all(data.as_bytes())
        .await
        .map_err(AppError::internal)?;
    s.input.flush().await.map_err(AppError::internal)
}

#[tauri::command]
#[specta::specta]
pub async fn terminal_resize(
    engine: State<'_, Engine>,
    terminals: State<'_, Terminals>,
    session: String,
    cols: u16,
    rows: u16,
) -> Result<(), AppError> {
    let exec = {
        let sessions = terminals.sessions.lock().await;
        sessions
            .get(&session)
            .ok_or_else(|| no_session(&session))?
            .exec
            .clone()
    };
    engine
        .docker()?
        .resize_exec(
            &exec,
            ResizeExecOptions {
                height: rows,
                width: cols,
            },
        )
        .await?;
    Ok(())
}

/// Closes the terminal: its input ends (so the shell does) and the output stops.
#[tauri::command]
#[specta::specta]
pub async fn terminal_close(
    terminals: State<'_, Terminals>,
    session: String,
) -> Result<(), AppError> {
    if let Some(mut s) = terminals.sessions.lock().await.remove(&session) {
        let _ = s.input.shutdown().await;
        s.reader.abort();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_split_across_chunks_arrive_whole() {
        let mut carry = Vec::new();
        let euro = "€".as_bytes();
        assert_eq!(take_utf8(&mut carry, b"price: "), "price: ");
        assert_eq!(take_utf8(&mut carry, &euro[..2]), "");
        assert_eq!(take_utf8(&mut carry, &euro[2..]), "€");
        assert!(carry.is_empty());
        assert_eq!(take_utf8(&mut carry, b"\xffok"), "\u{fffd}ok");
    }
}
