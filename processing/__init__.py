"""Video in, scores and masks out: ``processing_lavida`` (``LavidaProcessor``), ``video_io``, ``detection`` and the
``video-anomaly-detection`` pipeline (``pipeline_lavida``).

Importing this package imports nothing; each module is imported when asked for, so the ``lavida`` command line can
read and check videos without loading torch.
"""
