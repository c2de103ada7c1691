"""reelbot's Discord front end, a thin layer over `pipeline/`. Data goes one way:

    cogs/ (a feature each) ──► jobs.JobRunner (the queue) ──► presenter (its JobObserver)
                                  │ admission, usage,            │ progress_message, scene_thread,
                                  │ retention, store             │ delivery: send and edit
                                  ▼                              ▼
                               pipeline/ (the render)          progress_embed, scene_embed,
                                                               forgotten: draw, pure

`__main__` opens the store, the runner and the presenters and hands them to `app.ReelBot`,
which loads the cogs and answers every error (`errors`) in words (`text`). A feature's buttons
reach the job's messages through `controls`; who may do what is `checks`.
"""
