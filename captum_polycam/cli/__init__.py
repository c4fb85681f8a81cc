"""The ``captum-polycam`` command line: explain images, evaluate methods, sanity-check them."""
