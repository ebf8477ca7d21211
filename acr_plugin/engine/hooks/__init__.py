from .cam_visualization_hook import CAMVisualizationHook, cam_panel

__all__ = ['CAMVisualizationHook', 'cam_panel']
