"""What the Hugging Face task families (GLUE, QA) share: the fine-tuning module."""
