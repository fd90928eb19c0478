//! Sockets across shards: listeners every shard accepts on (one client port per node,
//! `SO_REUSEPORT` spreading connections over the shards) and the hand-over of an accepted
//! connection to the shard a shard-aware client asked for.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, IntoRawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// How many connections may wait in each listener's accept queue.
pub const LISTEN_BACKLOG: i32 = 1024;

/// `count` listeners bound to the same address with `SO_REUSEPORT`, one per shard. With
/// port 0 the first picks a free port and the rest share it.
pub fn reuse_port_listeners(
    address: SocketAddr,
    count: usize,
) -> std::io::Result<Vec<TcpListener>> {
    let mut listeners: Vec<TcpListener> = Vec::with_capacity(count);
    let mut bound = address;
    for _ in 0..count.max(1) {
        let socket = Socket::new(
            Domain::for_address(bound),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&bound.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        let listener: TcpListener = socket.into();
        bound = listener.local_addr()?;
        listeners.push(listener);
    }
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
