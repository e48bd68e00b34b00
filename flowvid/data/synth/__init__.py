"""The synthetic video generators: vessel clips with exact ground truth in several looks
(:mod:`~flowvid.data.synth.synthetic`, with its scene, vessels, cells, camera and looks), the
generic motion corpus (:mod:`~flowvid.data.synth.motion`, on layers and textures), and the
corpus writer (:mod:`~flowvid.data.synth.corpus`). The loaders are in :mod:`flowvid.data`."""
