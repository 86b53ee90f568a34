//! End-to-end tests of the edge (`berth edge`): the real binary in its own process, fed routing
//! tables over its control socket, in front of small HTTP backends written here. Loopback only;
//! every edge process is killed and every backend stopped when its test ends, pass or fail.

mod backend;
mod harness;
mod recorder;
mod ws;

mod balancing;
mod cache;
mod compress;
mod failures;
mod guards;
mod http1;
mod lifecycle;
mod protocol;
mod rollout;
mod smuggling;
mod takeover;
mod tls;
