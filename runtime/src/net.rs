//! Sockets across shards: the listener every shard accepts on (one client port per node,
//! one socket shared by the shards, never `SO_REUSEPORT`: no other process may join it)
//! and the hand-over of an accepted connection to the shard a shard-aware client asked
//! for.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, IntoRawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// How many connections may wait in each listener's accept queue.
pub const LISTEN_BACKLOG: i32 = 1024;

/// One listening socket on `address`, with a handle per shard (`count` of them). Every
/// handle is a duplicate of the same socket, so the shards accept from one queue.
///
/// The socket is bound *without* `SO_REUSEPORT`: with it, a second process (another
/// server started on the same port by mistake) would join the group silently and the
/// kernel would split new connections, and so a user's data, between the two processes.
/// Without it the bind fails with `AddrInUse` while anything else listens on the address,
/// and nothing can join ours. `SO_REUSEADDR` only lets a restart bind over connections
/// of the previous run still in `TIME_WAIT`. With port 0 the kernel picks a free port.
pub fn shard_listeners(address: SocketAddr, count: usize) -> std::io::Result<Vec<TcpListener>> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(false)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    let first: TcpListener = socket.into();
    let mut listeners = Vec::with_capacity(count.max(1));
    for _ in 1..count.max(1) {
        listeners.push(first.try_clone()?);
    }
    listeners.insert(0, first);
    Ok(listeners)
}

/// Detaches an accepted connection from this shard's I/O driver so it can be sent to
/// another shard, which resumes it with `monoio::net::TcpStream::from_std`. The stream
/// must have no I/O in flight (after a completed read, as after a handshake).
#[allow(unsafe_code)]
pub fn detach(stream: monoio::net::TcpStream) -> std::net::TcpStream {
    let fd = stream.into_raw_fd();
    // SAFETY: `into_raw_fd` gave up monoio's ownership of `fd`, an open TCP socket; the new
    // std stream becomes its only owner.
    unsafe { std::net::TcpStream::from_raw_fd(fd) }
}
