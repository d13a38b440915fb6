//! `tiny_cnn`: four stride-2 conv-bn-SiLU layers, global pool, linear. About 100k parameters;
//! it exists so tests and quick starts train in seconds on a CPU.

use burn::module::Module;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{Tensor, backend::Backend};

use super::efficientnet::ConvBnAct;

const WIDTHS: [usize; 4] = [16, 32, 64, 128];

#[derive(Module, Debug)]
pub struct TinyCnn<B: Backend> {
    pub layers: Vec<ConvBnAct<B>>,
    pub pool: AdaptiveAvgPool2d,
    pub dropout: Dropout,
    pub classifier: Linear<B>,
}

impl<B: Backend> TinyCnn<B> {
    pub fn new(classes: usize, dropout: f64, device: &B::Device) -> Self {
        let mut cin = 3;
        let layers = WIDTHS
            .iter()
            .map(|&cout| {
                let layer = ConvBnAct::new(cin, cout, 3, 2, 1, true, device);
                cin = cout;
                layer
            })
            .collect();
        TinyCnn {
            layers,
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            dropout: DropoutConfig::new(dropout).init(),
            classifier: LinearConfig::new(cin, classes).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2>
    where
        B: super::fused::ModelBackend,
    {
        let mut x = x;
        for layer in &self.layers {
            x = layer.forward(x);
        }
        let x = self.pool.forward(x).flatten::<2>(1, 3);
        self.classifier.forward(self.dropout.forward(x))
    }
}

/// Trainable parameters of `tiny_cnn` with `classes` outputs, without building the model.
pub fn count_params(classes: usize) -> usize {
    let mut cin = 3;
    let mut total = 0;
    for cout in WIDTHS {
        total += cin * cout * 9 + 2 * cout;
        cin = cout;
    }
    total + cin * classes + classes
}
