"""A small neighborhood-attention model, trained for a few steps. Run it under the
preload (`make demo`) to see naflops' summary at exit; the program itself knows
nothing of naflops."""
import torch
import natten
from torch import nn


class Block(nn.Module):
    """NA transformer block: LayerNorm, NeighborhoodAttention2D, LayerNorm, MLP."""

    def __init__(self, dim=64, heads=4, kernel=7):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = natten.NeighborhoodAttention2D(dim, heads, kernel_size=kernel)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def main():
    torch.manual_seed(0)
    model = nn.Sequential(Block(), Block(kernel=5))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(2, 16, 16, 64)
    for step in range(3):
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
