# Runtime shared by acr_plugin configs: mmseg's runtime plus the plug-in import.
_base_ = ['mmseg::_base_/default_runtime.py']

custom_imports = dict(imports=['acr_plugin'], allow_failed_imports=False)
# gloo works on CPU-only machines too; GPU configs may switch to nccl.
env_cfg = dict(dist_cfg=dict(backend='gloo'))
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2000),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'),
)
randomness = dict(seed=0)
