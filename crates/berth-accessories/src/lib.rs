//! Accessories: PostgreSQL, MariaDB (engine `mysql`) and Redis servers run as local child
//! processes for a stack.
//!
//! An accessory lives in its own folder (see [`AccessoryConfig::dir`]):
//!
//! ```text
//! DIR/
//!   data/        the server's data (initialised once, never wiped)
//!   run/         unix socket(s) and pid files, mode 0700, owned by the server's user
//!   server.log   the server's stdout and stderr (and the output of initdb & co.)
//!   port         the TCP port chosen on first start, reused afterwards
//!   password     the generated password (mode 0600); never passed on a command line
//!   lock         serialises `ensure_running` / `stop` between Berth processes
//!   redis.conf   (redis only) the config file carrying `requirepass`, mode 0600
//! ```
//!
//! Servers are started detached (their own session, output to `server.log`), so they outlive
//! the Berth process that started them; a later Berth process [adopts](Accessory::adopt) a
//! live server instead of starting a second one.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use berth_accessories::{Accessory, AccessoryConfig};
//! let db = Accessory::new(AccessoryConfig {
//!     name: "db".into(),
//!     engine: berth_spec::Engine::Postgres,
//!     database: "hello".into(),
//!     user: "hello".into(),
//!     port: None,
//!     dir: "/var/lib/berth/hello/accessories/db".into(),
//! });
//! let running = db.ensure_running().await?;
//! let database_url = db.env_value(&running);
//! # let _ = database_url;
//! db.stop(std::time::Duration::from_secs(10)).await?;
//! # Ok(()) }
//! ```

mod accessory;
mod binaries;
mod config;
mod layout;
mod lock;
mod mysql;
mod port;
mod postgres;
mod process;
mod redis;
mod secret;
mod server;
mod user;

pub use accessory::Accessory;
pub use config::{AccessoryConfig, RunningAccessory};
pub use server::AccessoryStats;
