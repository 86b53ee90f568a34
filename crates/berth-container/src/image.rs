//! A release's image. The release folder (the service's source, snapshotted) is the build
//! context; the image is built (or pulled) once, tagged `berth/STACK-SERVICE:RELEASE`, and pinned
//! by its id, a content digest, recorded in [`IMAGE_FILE`] in the release folder. Replicas run
//! that id, so retagging or pulling a moved tag never changes what a release runs.

use std::path::Path;

use berth_model::Release;
use berth_spec::{ImageSource, ServiceSpec};
use serde::{Deserialize, Serialize};

use crate::plan::image_repo;
use crate::{ContainerError, Engine};

/// The file in a release folder naming its image.
pub const IMAGE_FILE: &str = ".berth-image.json";

/// The image of one release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseImage {
    /// `sha256:...`: what replicas run.
    pub id: String,
    /// `berth/STACK-SERVICE:RELEASE`.
    pub tag: String,
    /// The reference it was pulled as (`None` for a build).
    pub pulled_from: Option<String>,
    /// Registry digests (`name@sha256:...`) when it came from a registry.
    pub digests: Vec<String>,
}

impl ReleaseImage {
    /// The image recorded in a release folder, if any.
    pub fn read(release_dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(release_dir.join(IMAGE_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// The image of `release` of a container service: the recorded one when the engine still has
/// it, else built from the release folder (or pulled), tagged and recorded. Errors name the fix
/// and leave nothing running touched.
pub async fn ensure_release_image(
    engine: &Engine,
    stack: &str,
    service: &ServiceSpec,
    release: &Release,
    mut log: impl FnMut(&str),
) -> Result<ReleaseImage, ContainerError> {
    let dir = Path::new(&release.dir);
    let Some(container) = &service.container else {
        return Err(ContainerError::Build {
            service: service.name.clone(),
            reason: "the service has no image or dockerfile".into(),
        });
    };
    if let Some(recorded) = ReleaseImage::read(dir) {
        if engine.image_id(&recorded.id).await?.is_some() {
            return Ok(recorded);
        }
        log(&format!(
            "the engine no longer has image {}; making it again",
            recorded.id
        ));
    }
    let repo = image_repo(stack, &service.name);
    let tag = format!("{repo}:{}", release.id);
    let (id, pulled_from) = match &container.image {
        ImageSource::Build { dockerfile, target } => {
            let id = engine
                .build(
                    &service.name,
                    dir,
                    dockerfile,
                    target.as_deref(),
                    &tag,
                    &mut log,
                )
                .await?;
            (id, None)
        }
        ImageSource::Pull { reference } => {
            let id = engine.pull(reference, &mut log).await?;
            engine.tag(&id, &repo, &release.id.0).await?;
            (id, Some(reference.clone()))
        }
    };
    let digests = engine.repo_digests(&id).await.unwrap_or_default();
    let image = ReleaseImage {
        id,
        tag,
        pulled_from,
        digests,
    };
    let json = serde_json::to_vec_pretty(&image).expect("an image record serializes");
    let temp = dir.join(format!("{IMAGE_FILE}.tmp"));
    std::fs::write(&temp, json)
        .and_then(|()| std::fs::rename(&temp, dir.join(IMAGE_FILE)))
        .map_err(ContainerError::io(format!(
            "recording the image in {}",
            dir.display()
        )))?;
    Ok(image)
}
