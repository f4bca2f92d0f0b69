/** Placeholder until this component lands; see the README for its plan. */
export const COMPONENT = 'test';
