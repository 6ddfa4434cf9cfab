"""One thin module per DVC stage (the rows of `stage_table.STAGES`): each reads its params, calls the
libraries in the domain packages and reports one line. Nothing imports a stage module but the CLI."""
