//! Choosing the device among the backends compiled in (cargo features `flex`, `ndarray`,
//! `wgpu`).

use std::fmt;

use burn::tensor::Device;

use crate::TrainingError;

/// Environment variable naming the backend to use when several are compiled in.
pub const BURN_DEVICE_ENV: &str = "BURN_DEVICE";

/// A backend this build can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Burn's pure-Rust CPU backend (`flex` feature).
    Flex,
    /// The ndarray CPU backend (`ndarray` feature).
    NdArray,
    /// The wgpu GPU backend (`wgpu` feature): Vulkan, Metal, DirectX or OpenGL.
    Wgpu,
}

impl BackendKind {
    /// The name used by `--device` and `BURN_DEVICE`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::NdArray => "ndarray",
            Self::Wgpu => "wgpu",
        }
    }

    /// Backends compiled into this build, the preferred one first: a GPU build means to use the
    /// GPU; among CPU backends flex measured faster (see README).
    pub fn compiled() -> Vec<Self> {
        let mut kinds = Vec::new();
        if cfg!(feature = "wgpu") {
            kinds.push(Self::Wgpu);
        }
        if cfg!(feature = "flex") {
            kinds.push(Self::Flex);
        }
        if cfg!(feature = "ndarray") {
            kinds.push(Self::NdArray);
        }
        kinds
    }

    fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "flex" | "cpu" => Some(Self::Flex),
            "ndarray" => Some(Self::NdArray),
            "wgpu" | "gpu" => Some(Self::Wgpu),
            _ => None,
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The device a run uses and the backend behind it.
#[derive(Debug, Clone)]
pub struct SelectedDevice {
    /// Which backend.
    pub kind: BackendKind,
    /// The device (without autodiff).
    pub device: Device,
}

/// Picks the device: `requested` (a `--device` flag) first, then `$BURN_DEVICE`, then the
/// preferred backend compiled in. Asking for one that is not compiled in is an error that says
/// which feature to build with.
pub fn select_device(requested: Option<&str>) -> Result<SelectedDevice, TrainingError> {
    let compiled = BackendKind::compiled();
    let from_env = std::env::var(BURN_DEVICE_ENV)
        .ok()
        .filter(|value| !value.trim().is_empty());
    let (wanted, origin) = match (requested, from_env.as_deref()) {
        (Some(name), _) => (Some(name), "--device"),
        (None, Some(name)) => (Some(name), BURN_DEVICE_ENV),
        (None, None) => (None, ""),
    };
    let names = || {
        compiled
            .iter()
            .map(|kind| kind.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let kind = match wanted {
        None => *compiled.first().ok_or_else(|| {
            TrainingError::Device(
                "no backend compiled in: build with --features flex, ndarray or wgpu".to_string(),
            )
        })?,
        Some(name) => {
            let kind = BackendKind::parse(name).ok_or_else(|| {
                TrainingError::Device(format!(
                    "{origin}={name}: unknown backend; this build has: {}",
                    names()
                ))
            })?;
            if !compiled.contains(&kind) {
                return Err(TrainingError::Device(format!(
                    "{origin}={name}: this build does not include the {kind} backend (it has: {}); \
                     rebuild with --features {kind}",
                    names()
                )));
            }
            kind
        }
    };
    Ok(SelectedDevice {
        kind,
        device: device_for(kind)?,
    })
}

#[allow(unreachable_code, unused_variables)]
fn device_for(kind: BackendKind) -> Result<Device, TrainingError> {
    match kind {
        BackendKind::Flex => {
            #[cfg(feature = "flex")]
            return Ok(Device::flex());
        }
        BackendKind::NdArray => {
            // `Device::ndarray()` is deprecated in Burn 0.22, yet ndarray is one of the backends
            // this project offers and compares.
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            return Ok(Device::ndarray());
        }
        BackendKind::Wgpu => {
            // `Device::wgpu(..)` is lazy and panics at the first tensor operation when there is
            // no adapter; `init` asks for one now and reports failure as an error.
            #[cfg(feature = "wgpu")]
            return Device::wgpu_options().init().map_err(|error| {
                TrainingError::Device(format!(
                    "no usable GPU adapter for wgpu: {error}. Without a GPU, install a software \
                     Vulkan driver (Debian/Ubuntu: apt-get install mesa-vulkan-drivers libvulkan1) \
                     or run on a CPU backend (--device flex)"
                ))
            });
        }
    }
    Err(TrainingError::Device(format!(
        "the {kind} backend is not compiled in"
    )))
}
