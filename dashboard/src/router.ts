import { createRouter, createWebHashHistory } from 'vue-router'
import { hasRole, session } from './session'
import OverviewView from './views/OverviewView.vue'
import SignInView from './views/SignInView.vue'

// Hash history: deep links work from any static file server, the API's included.
export const router = createRouter({
  history: createWebHashHistory(),
  routes: [
    { path: '/', name: 'overview', component: OverviewView },
    { path: '/sign-in', name: 'sign-in', component: SignInView, meta: { public: true } },
    { path: '/devices/:code', name: 'device', component: () => import('./views/DeviceView.vue'), props: true },
    { path: '/reports', name: 'reports', component: () => import('./views/ReportsView.vue') },
    { path: '/savings', name: 'savings', component: () => import('./views/SavingsView.vue') },
    // Alerts.
    { path: '/alerts', name: 'alerts', component: () => import('./views/AlertsView.vue') },
    {
      path: '/admin/devices',
      name: 'devices-admin',
      component: () => import('./views/DevicesAdminView.vue'),
      meta: { role: 'operator' },
    },
    { path: '/:rest(.*)*', redirect: '/' },
  ],
  scrollBehavior: () => ({ top: 0 }),
})

router.beforeEach((to) => {
  if (!to.meta.public && !session.key) return { name: 'sign-in', query: to.fullPath !== '/' ? { next: to.fullPath } : {} }
  if (to.name === 'sign-in' && session.key) return { name: 'overview' }
  if (to.meta.role === 'operator' && !hasRole('operator')) return { name: 'overview', query: { denied: '1' } }
  return true
})
