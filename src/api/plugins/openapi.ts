// The OpenAPI document, generated from the routes' zod schemas, and Swagger UI at /docs.
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import fp from 'fastify-plugin';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';

export default fp(
  async (app) => {
    await app.register(swagger, {
      openapi: {
        info: { title: 'threadbox', version: '1', description: 'A durable mailbox for AI-agent conversation threads' },
        components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
        // /v1 needs a key whenever THREADBOX_API_KEYS is set; the operations routes opt out.
        security: [{ bearer: [] }],
      },
      transform: jsonSchemaTransform,
      // Schemas with a `.meta({ id })` (Error, RunEvent) become components the routes' $refs point to.
      transformObject: (document) => optionalNullableBodies(jsonSchemaTransformObject(document)),
    });
    await app.register(swaggerUi, { routePrefix: '/docs' });
  },
  { name: 'threadbox-openapi' },
);

/** @fastify/swagger marks every request body required: a route whose body may be null takes none. */
function optionalNullableBodies<T>(document: T): T {
  type Operation = { requestBody?: { required?: boolean; content?: Record<string, { schema?: { nullable?: boolean } }> } };
  const paths = (document as { paths?: Record<string, Record<string, Operation>> }).paths ?? {};
  for (const operation of Object.values(paths).flatMap((item) => Object.values(item))) {
    const body = operation.requestBody;
    if (body && Object.values(body.content ?? {}).every((media) => media.schema?.nullable)) body.required = false;
  }
  return document;
}
