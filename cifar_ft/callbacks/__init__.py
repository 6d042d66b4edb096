"""Lightning callbacks: the freeze schedule (and its feature cache), throughput, the NaN guard, the
signal stop, the preprocessing record. They see the datamodule and the LightningModule only through
the Protocols of `cifar_ft.contracts`, never by importing `cifar_ft.data` or `cifar_ft.models`."""
