"""python -m s3ft.report compare.json OUT_DIR"""
import sys

from s3ft.report import main

sys.exit(main())
