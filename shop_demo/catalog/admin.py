from django.contrib import admin

from visrec.admin import VisuallySimilarAdminMixin

from .models import Category, Product, ProductImage


class ProductImageInline(admin.TabularInline):
    model = ProductImage
    extra = 0


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    prepopulated_fields = {"slug": ("name",)}
    search_fields = ["name"]


@admin.register(Product)
class ProductAdmin(VisuallySimilarAdminMixin, admin.ModelAdmin):
    list_display = ["name", "category", "price", "stock"]
    list_filter = ["category"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ("name",)}
    inlines = [ProductImageInline]
    readonly_fields = ["visrec_embedding_status", "visrec_similar_products"]
