// Request bodies: JSON in valid UTF-8, or none at all.
import fp from 'fastify-plugin';
import { ApiError } from '../errors.js';

/**
 * JSON bodies must be valid UTF-8: a decoder would otherwise turn bad bytes into U+FFFD and store
 * text the client never sent. An empty body is no body, whatever its content type, so routes that
 * take none (`/interrupt`, `/cancel`) accept what Swagger UI and generated clients send; a route that
 * needs a body still refuses it through its schema. Any other content type is refused.
 */
export default fp(
  async (app) => {
    const parseJson = app.getDefaultJsonParser('error', 'error');
    const utf8 = new TextDecoder('utf-8', { fatal: true });
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body: Buffer, done) => {
      if (body.length === 0) return done(null, undefined);
      let text: string;
      try {
        text = utf8.decode(body);
      } catch {
        return done(new ApiError('invalid_request', 'invalid request: the body is not valid UTF-8'), undefined);
      }
      parseJson(request, text, done);
    });
    app.addContentTypeParser('*', { parseAs: 'buffer' }, (request, body: Buffer, done) => {
      if (body.length === 0) return done(null, undefined);
      const type = request.headers['content-type'] ?? 'none';
      done(new ApiError('invalid_request', `invalid request: content type ${JSON.stringify(type)} is not supported; send application/json`), undefined);
    });
  },
  { name: 'threadbox-body-parsers' },
);
