"""``tclap`` sub-commands that drive more than ``tclap`` itself (each: ``add_arguments(parser)``, ``run(args)``)."""
