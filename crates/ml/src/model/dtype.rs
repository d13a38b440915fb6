//! A model's float tensors in the device's float type (`train { precision = … }`).
//!
//! burn fixes a device's default float type once per process (`set_default_dtypes`), and
//! tensors made from data after that take it. But a module filled from snapshots or a record
//! of another type keeps their type: the initial weights, drawn on the CPU in f32 and applied
//! (`train::build_seeded`), and pretrained ones. In f16 the first convolution then meets f16
//! images and f32 weights, and burn stops on a dtype mismatch. So every path that fills a model
//! ends with [`to_device_float`].

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Tensor, get_device_settings};

/// `model` with every float tensor (parameters and BatchNorm running statistics) cast to the
/// default float type of `device`. Parameters stay trainable leaves of their own.
pub fn to_device_float<B: Backend, M: Module<B>>(model: M, device: &B::Device) -> M {
    let dtype = get_device_settings::<B>(device).float_dtype;
    model.map(&mut CastFloats { dtype })
}

struct CastFloats {
    dtype: FloatDType,
}

impl<B: Backend> ModuleMapper<B> for CastFloats {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        if tensor.dtype() == DType::from(self.dtype) {
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let trainable = tensor.is_require_grad();
        // Detached, so that the cast is the leaf the optimiser's gradients are keyed by.
        let cast = tensor.cast(self.dtype).detach();
        Param::from_mapped_value(id, if trainable { cast.require_grad() } else { cast }, mapper)
    }
}
