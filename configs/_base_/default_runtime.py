# Runtime shared by acr_plugin configs: mmseg's default runtime, written out
# because `mmseg::` config bases do not resolve with the onedl-mmsegmentation
# distribution under mmseg's own tools (mmengine looks for a distribution named
# "mmsegmentation"; acr_plugin's tools/ map the prefix to the fork, see
# docs/installation.md "Config bases").
default_scope = 'mmseg'
custom_imports = dict(imports=['acr_plugin'], allow_failed_imports=False)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # gloo also works on CPU-only machines; multi-GPU configs may use nccl.
    dist_cfg=dict(backend='gloo'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer'
)
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
tta_model = dict(type='SegTTAModel')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2000),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # CAM pictures (tools/test.py --show-dir); works without image files
    visualization=dict(type='CAMVisualizationHook'),
    # acr_plugin safety hooks (drop one with default_hooks=dict(_delete_=True,
    # ...)): stop with the iteration and the loss key before a nan/inf update
    non_finite_loss=dict(type='NonFiniteLossHook'),
    # random numbers per (seed, rank, iteration): --resume is exact (the
    # augmentations only with num_workers=0, see IterationSeedHook)
    iteration_seed=dict(type='IterationSeedHook'),
    # checkpoints load with torch.load(weights_only=True)
    weights_only_checkpoint=dict(type='WeightsOnlyCheckpointHook'),
)
# Distributed runs (tools/dist_train.sh): the timm ViTs keep a final norm that
# out_norm=False never uses (the official ACR classifier reads block 11 before
# it), and schedules may switch losses (hence heads) on later: DDP must look
# for parameters without gradients. Frozen parameters (requires_grad=False)
# need nothing. On CPU-only machines tools/train.py adds device_ids=None.
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
randomness = dict(seed=0)
