"""The router's stages, one module each; their order is in router/pipeline.py (`build_pipeline`)."""
