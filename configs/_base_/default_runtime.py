# Runtime shared by acr_plugin configs: mmseg's default runtime, written out
# because `mmseg::` config scopes do not resolve with the onedl-mmsegmentation
# distribution (mmengine looks for a distribution named "mmsegmentation").
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
    type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
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
)
randomness = dict(seed=0)
