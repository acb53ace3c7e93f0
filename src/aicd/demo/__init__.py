"""`aicd demo`: the delivery loop of the example AI service told with the core, not part of it.

`story.py` runs the story (`run_demo`); `repo.py` makes its Git repository, `pipeline.py` runs its
pipelines through `aicd run`, `load.py` generates traffic, `report.py` gathers the summary and
`cleanup.py` ends every process it started.
"""
