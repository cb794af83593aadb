"""genq's composition root: the `genq` command and the `genq run` supervisor wire api/, workers/,
infra/ and vendors/ together; nothing else imports from here."""
