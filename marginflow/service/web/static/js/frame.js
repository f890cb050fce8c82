// A page with nothing of its own (the refusal page): the frame alone.
import "./common.js";
