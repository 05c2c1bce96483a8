"""What the scripts stand on, none of it the paper's method.

cli.py         nanoGPT-style --key=value overrides of a script's config block, --help, one-line errors
checkpoint.py  --resume: a training run's checkpoint (train.py, baselines.py), written and read safely
ddp.py         several processes under torchrun: rank, device, the few collectives training needs
tiles.py       the layout of overlapping latent tiles and frame windows (sample.velocity blends them)
lowbits.py     --low_memory: the frozen transformer in 4 or 8 bits, the rest offloaded (one consumer GPU)
tiny.py        the tiny backbones' architectures (pretrain.py builds them, backbones.py loads them)
plan.py        planned peak memory from shapes on the meta device (bench.py --plan); the one file
               here that imports the top level (backbones, train, sample): it measures them
"""
