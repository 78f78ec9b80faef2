"""The word-attribute name-grounding head (``grounding_head: word_attributes``): each word of a name is encoded
alone and matched against a colour map and a shape map; a name is where all its words are."""

import pytest
import torch
import torch.nn.functional as F

from lavida import LavidaConfig, LavidaForVideoAnomalyDetection
from lavida.model_factory import default_model_path
from lavida.name_grounding_head import WordAttributeGroundingHead


@pytest.fixture(scope="module")
def embedded_model():
    return LavidaForVideoAnomalyDetection.from_pretrained(default_model_path()).eval()


@pytest.fixture
def word_config():
    config = LavidaConfig.from_pretrained(default_model_path())  # the embedded model's sizes
    config.grounding_head, config.grounding_image_channels = "word_attributes", 16
    return config


def _tokens(model_path, names):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(f"{model_path}/class_tokenizer")
    encoded = tokenizer(names, padding=True, return_tensors="pt")
    return encoded["input_ids"][None], encoded["attention_mask"][None]  # (1, N, Lc)


def _name_vector(model, name):
    ids, mask = _tokens(default_model_path(), [name])
    return model.encode_class_names(ids, mask)[0, 0]


def test_each_word_is_encoded_alone_and_a_word_in_pieces_stays_one_word(embedded_model):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(default_model_path())
    names = processor.encode_names([["purple hexagon", "red circle", "fire"]])
    # "hexagon" is three word pieces for MiniLM's tokenizer (he ##xa ##gon), all of word 1
    assert names["class_word_ids"][0, 0].tolist()[:6] == [-1, 0, 1, 1, 1, -1]
    vectors, words = embedded_model.encode_name_words(names["class_input_ids"], names["class_attention_mask"],
                                                      names["class_word_ids"])
    assert words[0].sum(dim=1).tolist() == [2, 2, 1]
    assert vectors.shape == (1, 3, 2, embedded_model.config.text_embedding_size)
    # a word's vector is that of the word as a name of its own, whatever the other words of its name
    torch.testing.assert_close(vectors[0, 0, 0], _name_vector(embedded_model, "purple"))
    torch.testing.assert_close(vectors[0, 0, 1], _name_vector(embedded_model, "hexagon"))
    torch.testing.assert_close(vectors[0, 1, 0], _name_vector(embedded_model, "red"))
    assert not torch.allclose(vectors[0, 0, 0], vectors[0, 1, 0])
    assert (vectors[0, 2, 1:] == 0).all()  # no second word there
    # without word ids every piece is a word: four for "purple hexagon"
    pieces, piece_mask = embedded_model.encode_name_words(names["class_input_ids"], names["class_attention_mask"])
    assert piece_mask[0].sum(dim=1).tolist() == [4, 2, 1]
    torch.testing.assert_close(pieces[0, 0, 1], _name_vector(embedded_model, "he"))


def test_a_name_is_the_product_of_its_words(word_config):
    torch.manual_seed(0)
    head = WordAttributeGroundingHead(word_config).eval()
    dim = word_config.grounding_embedding_size
    pixels = torch.randn(2, 2 * dim, 4, 4)
    words = torch.randn(1, 3, 2, word_config.text_embedding_size)
    mask = torch.tensor([[[True, True], [True, False], [True, True]]])
    out = head(pixels, (words, mask), 2)  # (BT=2, N=3, 4, 4)
    single = [head(pixels, (words[:, :, k:k + 1], torch.ones(1, 3, 1, dtype=torch.bool)), 2) for k in range(2)]
    both = torch.logit(torch.sigmoid(single[0]) * torch.sigmoid(single[1]))
    torch.testing.assert_close(out[:, [0, 2]], both[:, [0, 2]], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out[:, 1], single[0][:, 1], atol=1e-4, rtol=1e-4)  # a missing word changes nothing


def test_the_colour_map_has_no_spatial_context_and_the_shape_map_no_colour(word_config):
    torch.manual_seed(0)
    head = WordAttributeGroundingHead(word_config).eval()
    dim = word_config.grounding_embedding_size
    features = [torch.zeros(1, 8, 8, 8)]  # only the grid size is read
    frames = torch.full((2, 3, 32, 32), -1.0)
    frames[0, :, 8:16, 8:16] = torch.tensor([2.0, -1.5, 2.0])[:, None, None]  # a purple-ish square
    frames[1, :, 8:16, 8:16] = torch.tensor([-1.5, 2.0, -1.5])[:, None, None]  # the same square in green
    maps = head.pixel_embeddings(features, frames)
    assert maps.shape == (2, 2 * dim, 8, 8)
    colour, shape = maps.split(dim, dim=1)
    torch.testing.assert_close(shape[0], shape[1])  # same outline, any colour: same shape map
    assert not torch.allclose(colour[0, :, 3, 3], colour[1, :, 3, 3])
    # a cell's colour depends on its own pixels only: background cells far from and next to the square agree
    torch.testing.assert_close(colour[0, :, 0, 0], colour[0, :, 1, 1])
    with pytest.raises(ValueError, match="reads the frames"):
        head.pixel_embeddings(features, None)


def test_config_needs_a_shape_encoder_for_word_attributes():
    with pytest.raises(ValueError, match="grounding_image_channels"):
        LavidaConfig(grounding_head="word_attributes", grounding_image_channels=0)
    with pytest.raises(ValueError, match="grounding_head"):
        LavidaConfig(grounding_head="sentence")


def test_a_word_attribute_model_needs_the_names_token_ids(word_config):
    word_config.frame_score = "name_grounding"
    model = LavidaForVideoAnomalyDetection(word_config)
    with pytest.raises(ValueError, match="class_input_ids"):
        model._grounding_names(torch.zeros(1, 2, word_config.text_embedding_size), None, None)
    assert isinstance(model.name_grounding_head, WordAttributeGroundingHead)


def test_the_word_head_reads_the_grounding_frames_when_given(tiny_batch):
    """``grounding_pixel_values`` (the processor's ``grounding_image_size``) replace SAM2's frames for the head only."""
    torch.manual_seed(0)
    model = LavidaForVideoAnomalyDetection(LavidaConfig.tiny(
        frame_score="name_grounding", grounding_head="word_attributes", grounding_image_channels=8)).eval()
    batch = {k: v for k, v in tiny_batch.items() if k not in ("labels", "target_masks")}
    sam = batch["sam_pixel_values"]  # (B, T, 3, 128, 128)
    with torch.no_grad():
        for parameter in model.name_grounding_head.parameters():  # the tiny init's maps are nearly flat
            torch.nn.init.normal_(parameter, std=0.5)
        reference = model(**batch)
        same = model(**batch, grounding_pixel_values=sam.clone())
        larger = model(**batch, grounding_pixel_values=F.interpolate(
            sam.flatten(0, 1), scale_factor=2, mode="nearest").unflatten(0, sam.shape[:2]))  # the same frames, 256 px
        other = model(**batch, grounding_pixel_values=sam.flip(-1))
    torch.testing.assert_close(same.frame_logits, reference.frame_logits)
    assert larger.frame_logits.shape == reference.frame_logits.shape
    assert not torch.allclose(other.name_logits, reference.name_logits)  # the head read the frames it was given
    torch.testing.assert_close(other.candidate_mask_logits, reference.candidate_mask_logits)  # SAM2 did not
    with pytest.raises(ValueError, match="grounding_pixel_values must be"):
        model(**batch, grounding_pixel_values=sam[:, :2])


def test_oriented_edges_tell_which_way_an_outline_runs():
    from lavida.name_grounding_head import frame_edge_directions, frame_edges

    frames = torch.full((2, 3, 16, 16), -1.0)
    frames[0, :, 2:14, 6:8] = 2.0  # a bar running up and down
    frames[1, :, 6:8, 2:14] = 2.0  # the same bar lying across
    edges = frame_edge_directions(frames)
    assert edges.shape == (2, 2, 16, 16)
    # the standing bar's long sides are steps to the pixel on the right (channel 0): columns 5 and 7
    assert edges[0, 0, 2:14, 5].all() and edges[0, 0, 2:14, 7].all() and edges[0, 0].sum() == 24
    assert edges[0, 1].sum() == 4  # its two short ends, two pixels each, step to the pixel below
    torch.testing.assert_close(edges[1], edges[0].flip(0).transpose(-1, -2))  # lying down swaps the two
    torch.testing.assert_close(frame_edges(frames), edges.amax(dim=1, keepdim=True))


def test_the_shape_map_reads_oriented_edges_through_a_full_resolution_stem(word_config):
    torch.manual_seed(0)
    word_config.grounding_image_input, word_config.grounding_image_stem_channels = "oriented_edges", 4
    head = WordAttributeGroundingHead(word_config).eval()
    stem = head.shape_encoder[0].layers[0]
    assert (stem.in_channels, stem.out_channels, stem.stride) == (2, 4, (1, 1))
    frames = torch.full((2, 3, 32, 32), -1.0)
    frames[:, :, 8:16, 8:16] = torch.tensor([2.0, -1.5, 2.0])[:, None, None]
    frames[1, :, 8:16, 8:16] = torch.tensor([-1.5, 2.0, -1.5])[:, None, None]
    dim = word_config.grounding_embedding_size
    grid = tuple(word_config.sam_config.vision_config.backbone_feature_sizes[0])
    maps = head.pixel_embeddings(None, frames)  # no SAM2 features: the config's grid
    assert maps.shape == (2, 2 * dim, *grid)
    shape = maps.split(dim, dim=1)[1]
    torch.testing.assert_close(shape[0], shape[1])  # still no colour in the shape map
    with pytest.raises(ValueError, match="grounding_image_stem_channels"):
        LavidaConfig(grounding_image_stem_channels=-1)
