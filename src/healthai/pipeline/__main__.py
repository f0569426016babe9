"""`python -m healthai.pipeline plan|current|follow|summary`: the job chain (see chain.py)."""

from healthai.pipeline.chain import main

raise SystemExit(main())
