//! Choosing the device among the backends compiled in (cargo features `flex`, `ndarray`,
//! `wgpu`).

use std::fmt;

use burn::tensor::Device;

use crate::InferenceError;

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
    /// GPU; among CPU backends flex measured faster (see docs/backends.md).
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
    /// What it is, for people: the CPU backend, or the GPU adapter, its driver and graphics API.
    pub description: String,
}

/// Picks the device: `requested` (a `--device` flag) first, then `$BURN_DEVICE`, then the
/// preferred backend compiled in. Asking for one that is not compiled in is an error that says
/// which feature to build with.
pub fn select_device(requested: Option<&str>) -> Result<SelectedDevice, InferenceError> {
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
            InferenceError::Device(
                "no backend compiled in: build with --features flex, ndarray or wgpu".to_string(),
            )
        })?,
        Some(name) => {
            let kind = BackendKind::parse(name).ok_or_else(|| {
                InferenceError::Device(format!(
                    "{origin}={name}: unknown backend; this build has: {}",
                    names()
                ))
            })?;
            if !compiled.contains(&kind) {
                return Err(InferenceError::Device(format!(
                    "{origin}={name}: this build does not include the {kind} backend (it has: {}); \
                     rebuild with --features {kind}",
                    names()
                )));
            }
            kind
        }
    };
    let (device, description) = device_for(kind)?;
    Ok(SelectedDevice {
        kind,
        device,
        description,
    })
}

#[allow(unreachable_code, unused_variables)]
fn device_for(kind: BackendKind) -> Result<(Device, String), InferenceError> {
    match kind {
        BackendKind::Flex => {
            #[cfg(feature = "flex")]
            return Ok((Device::flex(), "flex (CPU)".to_string()));
        }
        BackendKind::NdArray => {
            // `Device::ndarray()` is deprecated in Burn 0.22, yet ndarray is one of the backends
            // this project offers and compares.
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            return Ok((Device::ndarray(), "ndarray (CPU)".to_string()));
        }
        BackendKind::Wgpu => {
            #[cfg(feature = "wgpu")]
            return gpu::init();
        }
    }
    Err(InferenceError::Device(format!(
        "the {kind} backend is not compiled in"
    )))
}

/// Environment variable pinning wgpu's graphics API: `vulkan`, `gl`, `metal`, `dx12` or `auto`.
pub const WGPU_API_ENV: &str = "BURN_WGPU_API";

#[cfg(feature = "wgpu")]
mod gpu {
    use std::sync::{Mutex, PoisonError};

    use burn::tensor::Device;
    use burn::tensor::wgpu::{WgpuBackend, wgpu};

    use super::WGPU_API_ENV;
    use crate::InferenceError;

    /// What to install when no adapter answers.
    const HINT: &str = "Without a GPU, install a software Vulkan driver (Debian/Ubuntu: \
        apt-get install mesa-vulkan-drivers libvulkan1), set BURN_WGPU_API=gl to try OpenGL, \
        or run on a CPU backend (--device flex)";

    /// The graphics API to use: `$BURN_WGPU_API`, else Vulkan on Linux (where Vulkan has no
    /// adapter, wgpu's automatic choice quietly falls back to Mesa's OpenGL software rasteriser,
    /// which nobody asking for the GPU wants unannounced), else wgpu's own choice.
    fn requested_api() -> Result<WgpuBackend, InferenceError> {
        let value = std::env::var(WGPU_API_ENV).unwrap_or_default();
        Ok(match value.trim().to_ascii_lowercase().as_str() {
            "" if cfg!(target_os = "linux") => WgpuBackend::Vulkan,
            "" | "auto" => WgpuBackend::Auto,
            "vulkan" => WgpuBackend::Vulkan,
            "gl" | "opengl" => WgpuBackend::Gl,
            "metal" => WgpuBackend::Metal,
            "dx12" => WgpuBackend::Dx12,
            other => {
                return Err(InferenceError::Device(format!(
                    "{WGPU_API_ENV}={other}: expected vulkan, gl, metal, dx12 or auto"
                )));
            }
        })
    }

    fn backends(api: WgpuBackend) -> wgpu::Backends {
        match api {
            WgpuBackend::Vulkan => wgpu::Backends::VULKAN,
            WgpuBackend::Gl => wgpu::Backends::GL,
            WgpuBackend::Metal => wgpu::Backends::METAL,
            WgpuBackend::Dx12 => wgpu::Backends::DX12,
            _ => wgpu::Backends::all(),
        }
    }

    /// The adapters the API offers, asked before Burn opens one, to say which is used.
    fn adapters(api: WgpuBackend) -> Vec<wgpu::AdapterInfo> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: backends(api),
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        pollster::block_on(instance.enumerate_adapters(backends(api)))
            .iter()
            .map(wgpu::Adapter::get_info)
            .collect()
    }

    /// The devices opened so far, by API, with their descriptions. CubeCL registers a device's
    /// runtime once per process and refuses a second registration ("Service already
    /// initialized"), and one process may select the device twice: `bench` does, then its epoch
    /// run does again.
    static OPENED: Mutex<Vec<(WgpuBackend, Device, String)>> = Mutex::new(Vec::new());

    /// Opens the default adapter of the requested API now, so that a machine without one gets
    /// an error here rather than a panic at the first tensor operation (`Device::wgpu` is lazy);
    /// the same device again when it is already open.
    pub(super) fn init() -> Result<(Device, String), InferenceError> {
        let api = requested_api()?;
        // A poisoned lock still holds a consistent list: entries are pushed whole.
        let mut opened = OPENED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, device, description)) = opened.iter().find(|(open, ..)| *open == api) {
            return Ok((device.clone(), description.clone()));
        }
        let (device, description) = open(api)?;
        opened.push((api, device.clone(), description.clone()));
        Ok((device, description))
    }

    /// Opens the default adapter of `api`, and describes it.
    fn open(api: WgpuBackend) -> Result<(Device, String), InferenceError> {
        let found = adapters(api);
        if found.is_empty() {
            return Err(InferenceError::Device(format!(
                "wgpu found no {api:?} adapter on this machine. {HINT}"
            )));
        }
        let device = Device::wgpu_options()
            .graphics_api(api)
            .init()
            .map_err(|error| {
                InferenceError::Device(format!("wgpu could not open an adapter: {error}. {HINT}"))
            })?;
        let name = device.identity().map(|identity| identity.name);
        let description = match found.iter().find(|info| Some(&info.name) == name.as_ref()) {
            Some(info) => {
                let driver = [info.driver.trim(), info.driver_info.trim()]
                    .into_iter()
                    .filter(|part| !part.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                format!(
                    "wgpu: {} ({:?}) via {:?}, driver {}",
                    info.name, info.device_type, info.backend, driver
                )
            }
            None => format!(
                "wgpu: {} via {api:?}",
                name.unwrap_or_else(|| "unnamed adapter".to_string())
            ),
        };
        Ok((device, description))
    }
}
