"""``mtsandbox doc-images``: docs/img/frames.png; see mtsandbox/cli/doc_images.py."""

from mtsandbox.cli.doc_images import main

if __name__ == "__main__":
    main()
