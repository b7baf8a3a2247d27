import pytest
import torch

from resnet_edge.model import BasicBlock, ResNet18, count_parameters


def test_parameter_count_is_resnet18_for_cifar10():
    assert count_parameters(ResNet18()) == 11_173_962


def test_output_shape_and_dtype():
    model = ResNet18().eval()
    with torch.no_grad():
        out = model(torch.randn(3, 3, 32, 32))
    assert out.shape == (3, 10)
    assert out.dtype == torch.float32


def test_num_classes_changes_only_the_head():
    assert count_parameters(ResNet18(num_classes=100)) == 11_173_962 + 90 * 512 + 90


def test_stem_keeps_resolution_and_stages_halve_it():
    model = ResNet18().eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        x = model.relu(model.bn1(model.conv1(x)))
        assert x.shape == (1, 64, 32, 32)  # no max-pool in the CIFAR stem
        for layer, shape in zip((model.layer1, model.layer2, model.layer3, model.layer4),
                                ((64, 32), (128, 16), (256, 8), (512, 4))):
            x = layer(x)
            assert x.shape[1:] == (shape[0], shape[1], shape[1])


def _zero_residual_branch(block: BasicBlock) -> None:
    torch.nn.init.zeros_(block.bn2.weight)
    torch.nn.init.zeros_(block.bn2.bias)


def test_identity_block_with_zeroed_branch_passes_relu_of_input():
    block = BasicBlock(64, 64).eval()
    _zero_residual_branch(block)
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        assert torch.equal(block(x), torch.relu(x))


def test_projection_block_with_zeroed_branch_passes_relu_of_shortcut():
    block = BasicBlock(64, 128, stride=2).eval()
    _zero_residual_branch(block)
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        out = block(x)
        assert out.shape == (2, 128, 4, 4)
        assert torch.allclose(out, torch.relu(block.shortcut(x)))


def test_shortcut_is_identity_only_when_shape_is_kept():
    assert isinstance(BasicBlock(64, 64).shortcut, torch.nn.Identity)
    assert not isinstance(BasicBlock(64, 128, stride=2).shortcut, torch.nn.Identity)


def test_zero_init_residual_makes_every_block_start_as_identity():
    model = ResNet18(zero_init_residual=True)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 8
    assert all(torch.count_nonzero(b.bn2.weight) == 0 for b in blocks)
    assert all(torch.count_nonzero(b.bn1.weight) > 0 for b in blocks)


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="stride must be 1 or 2, got 3"):
        BasicBlock(64, 64, stride=3)
    with pytest.raises(ValueError, match="num_classes must be at least 1, got 0"):
        ResNet18(num_classes=0)
