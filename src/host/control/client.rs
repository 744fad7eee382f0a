//! The client's side of the control socket: send one [`Command`] with a proof to the
//! node serving a data directory, and read its [`Reply`].

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::protocol::{
    Answer, Command, MAX_REPLY_BYTES, Reply, Request, VERSION, decode_reply, encode_request,
};
use super::socket_path;
use crate::host::guard::Proof;

/// What became of a forwarded command.
pub enum Forwarded {
    /// No node serves the data directory (no socket, or a stale one).
    NotRunning,
    /// The node stopped before carrying the command out.
    Declined,
    Answered(Reply),
    /// The connection broke, or the answer is not one: the command may or may not have
    /// been carried out. Says what happened.
    CutOff(String),
}

/// Whether a node is serving this data directory.
pub fn running(dir: &Path) -> bool {
    UnixStream::connect(socket_path(dir)).is_ok()
}

/// Sends `command` with `proof` to the node serving `dir`, if one does, and reads its
/// answer.
pub fn forward(dir: &Path, command: Command, proof: Proof) -> Forwarded {
    let Ok(mut stream) = UnixStream::connect(socket_path(dir)) else {
        return Forwarded::NotRunning;
    };
    let request = Request {
        version: VERSION,
        proof: proof.into(),
        command,
    };
    let sent = stream
        .write_all(&encode_request(&request))
        .and_then(|_| stream.shutdown(std::net::Shutdown::Write));
    drop(request);
    if let Err(e) = sent {
        return Forwarded::CutOff(format!("sending the command: {e}"));
    }
    let mut raw = Vec::new();
    let limit = MAX_REPLY_BYTES as u64 + 1;
    if let Err(e) = (&mut stream).take(limit).read_to_end(&mut raw) {
        return Forwarded::CutOff(format!("reading its answer: {e}"));
    }
    if raw.is_empty() {
        return Forwarded::CutOff("it closed the connection without an answer".into());
    }
    match decode_reply(&raw) {
        Ok(reply) if reply.answer == Answer::NotRun => Forwarded::Declined,
        Ok(reply) => Forwarded::Answered(reply),
        Err(e) => Forwarded::CutOff(format!("its answer is not one: {e}")),
    }
}
